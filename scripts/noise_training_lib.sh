# What the noise-training study's scripts share (sourced by scripts/noise_training_study.sh and
# scripts/noise_seed_check.sh): the γ grid and the settings of every sweep — the measurements of both scripts are
# merged, so they must be taken alike — and the sweep label of a run name.
GAMMAS="0 0.5 1 1.5 2 2.5 3"
SWEEP_ARGS=(--alpha 0.05 --limit 64 --batch_size 16)  # 64 held-out examples, the recipe's α

label() {  # run name → sweep label: {erm,ds,cut}[variant]_g{γ_train}_s{seed}
  local name=${1%_s*} gamma kind variant
  gamma=${name##*_g}; kind=${name%%_*}; variant=${name%_g*}; variant=${variant#"$kind"}; variant=${variant#_}
  case $kind in erm) kind=ERM ;; ds) kind="deep supervision" ;; cut) kind=constrained ;; esac
  case $variant in
    "") ;; upper) kind+=" upper half" ;; budget) kind+=" budget 0.1" ;; w*) kind+=" w=${variant#w}" ;;
    b*) kind+=" β=${variant#b}" ;; a*) kind+=" α=${variant#a}" ;; steps*) kind+=" ${variant#steps} steps" ;;
    *) kind+=" $variant" ;;
  esac
  echo "$kind γ=$gamma"
}
