"""Video clips for the denoising task of the unrolled transformer: real video folders and a built-in generated set.

Every loader returns a ``datasets.DatasetDict`` with ``train`` and ``test`` splits whose rows pair a noisy clip with its
clean target, both ``[T, n]`` float32 arrays (T frames of n = H·W greyscale pixels in [0, 1], frames as rows):

- ``noisy_frames``: ``clean + N(0, noise_std²)``, drawn with a fixed seed per example (the same data on every run);
- ``labels``: the clean clip.

That noise is the *training corruption*, part of the data (γ = 0, in distribution). The out-of-distribution
perturbation of the sweep is :class:`hf_cut.noise.EmbeddingNoise` on top, ``ε ~ N(μ, (γ σ_x)² I)`` with ``σ_x`` the
standard deviation of the frames entering the model. With ``noise_std = 0`` the model sees clean frames and all the
corruption comes from the hook (``noise_gamma`` in training), the paper's formulation.

Sources (``dataset_name``):

- ``digits`` (default, no download): scikit-learn's bundled 8×8 handwritten digits moving and bouncing on a small
  canvas. Train and test clips are drawn from disjoint sets of digit images. Needs ``scikit-learn``.
- ``shapes`` (no download, numpy only): moving squares, discs and crosses.
- ``ucsd``, ``avenue``, ``shanghaitech``, ``folder``: real videos under ``data_dir``, as the datasets ship them —
  folders of frame images (UCSD Ped1/Ped2 ``.tif``, ShanghaiTech test ``.jpg``) or video files (CUHK Avenue and
  ShanghaiTech training ``.avi``; read with ``opencv-python-headless`` or ``imageio`` + ``imageio-ffmpeg`` when
  installed). Frames are converted to greyscale, resized to ``frame_size × frame_size`` and cut into clips of T frames.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

import numpy as np
from datasets import Array2D, Dataset, DatasetDict, Features, Value

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "VIDEO_LAYOUTS",
    "VideoDataArguments",
    "find_videos",
    "impulse_noise",
    "load_video_dataset",
    "load_video_folder",
    "moving_digits",
    "moving_shapes",
    "read_frames",
]

IMAGE_EXTENSIONS = (".tif", ".tiff", ".jpg", ".jpeg", ".png", ".bmp")
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mov", ".mkv", ".mpg", ".mpeg", ".webm", ".m4v")
# (train, test) folders under `data_dir` as each dataset ships them
VIDEO_LAYOUTS: dict[str, tuple[str, str]] = {
    "ucsd": ("Train", "Test"),  # data_dir = .../UCSD_Anomaly_Dataset.v1p2/UCSDped2 (or UCSDped1)
    "avenue": ("training_videos", "testing_videos"),  # data_dir = .../Avenue Dataset
    "shanghaitech": ("training/videos", "testing/frames"),  # data_dir = .../shanghaitech
}
BUILTIN = ("digits", "shapes")


@dataclass
class VideoDataArguments:
    """Which clips to load; the fields are command-line flags and YAML keys of the unrolled-transformer recipes."""

    dataset_name: str = field(
        default="digits",
        metadata={"help": "'digits' or 'shapes' (built-in, no download), 'ucsd', 'avenue', 'shanghaitech' or 'folder'."},
    )
    data_dir: str | None = field(default=None, metadata={"help": "Root folder of a real video dataset."})
    train_subdir: str | None = field(
        default=None, metadata={"help": "Training videos under data_dir (default: the dataset's own layout)."}
    )
    test_subdir: str | None = field(
        default=None,
        metadata={"help": "Test videos under data_dir (default: the dataset's layout; 'folder': a split by video)."},
    )
    frame_size: int = field(default=16, metadata={"help": "Frames are resized to frame_size × frame_size pixels."})
    num_frames: int = field(default=8, metadata={"help": "T, frames per clip."})
    noise_std: float = field(default=0.2, metadata={"help": "Std of the training corruption, in pixel units ([0, 1])."})
    dataset_seed: int = field(default=0, metadata={"help": "Seed of the generated clips, the splits and the noise."})
    num_train_examples: int = field(default=2000, metadata={"help": "Training clips (built-in: generated; real: at most)."})
    num_test_examples: int = field(default=500, metadata={"help": "Test clips (built-in: generated; real: at most)."})
    clip_stride: int | None = field(default=None, metadata={"help": "Real videos: frames between clip starts (T)."})
    frame_step: int = field(default=1, metadata={"help": "Real videos: keep every frame_step-th frame."})
    max_clips_per_video: int | None = field(default=None, metadata={"help": "Real videos: at most this many clips."})

    def load(self) -> DatasetDict:
        return load_video_dataset(**asdict(self))

    @classmethod
    def from_dict(cls, values: dict) -> VideoDataArguments:
        """The arguments among ``values`` (unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def load_video_dataset(
    dataset_name: str = "digits",
    data_dir: str | None = None,
    train_subdir: str | None = None,
    test_subdir: str | None = None,
    frame_size: int = 16,
    num_frames: int = 8,
    noise_std: float = 0.2,
    dataset_seed: int = 0,
    num_train_examples: int = 2000,
    num_test_examples: int = 500,
    clip_stride: int | None = None,
    frame_step: int = 1,
    max_clips_per_video: int | None = None,
) -> DatasetDict:
    """Train and test clips (see the module docstring); the arguments are those of :class:`VideoDataArguments`."""
    if num_frames < 1 or frame_size < 2:
        raise ValueError(f"`num_frames` must be >= 1 and `frame_size` >= 2, got {num_frames} and {frame_size}.")
    if noise_std < 0:
        raise ValueError(f"`noise_std` must be >= 0, got {noise_std}.")
    if dataset_name in BUILTIN:
        make = moving_digits if dataset_name == "digits" else moving_shapes
        clean = make(num_train_examples, num_test_examples, frame_size, num_frames, seed=dataset_seed)
        return DatasetDict(
            {split: _to_dataset(clips, noise_std, dataset_seed, i) for i, (split, clips) in enumerate(clean.items())}
        )
    if dataset_name not in (*VIDEO_LAYOUTS, "folder"):
        raise ValueError(
            f"`dataset_name` must be one of {[*BUILTIN, *VIDEO_LAYOUTS, 'folder']}, got {dataset_name!r}."
        )
    if not data_dir:
        raise ValueError(f"`data_dir` is required for dataset_name={dataset_name!r}: the folder holding the videos.")
    default_train, default_test = VIDEO_LAYOUTS.get(dataset_name, (None, None))
    return load_video_folder(
        os.path.join(data_dir, train_subdir or default_train or ""),
        os.path.join(data_dir, test_subdir or default_test) if (test_subdir or default_test) else None,
        frame_size=frame_size,
        num_frames=num_frames,
        noise_std=noise_std,
        seed=dataset_seed,
        clip_stride=clip_stride,
        frame_step=frame_step,
        max_clips_per_video=max_clips_per_video,
        max_train_clips=num_train_examples,
        max_test_clips=num_test_examples,
    )


# --- Built-in generated clips ---


def _bounce(start: np.ndarray, velocity: np.ndarray, high: int, num_frames: int) -> np.ndarray:
    """Integer positions ``[T, 2]`` moving by ``velocity`` per frame and reflecting off ``0`` and ``high``."""
    if high == 0:
        return np.zeros((num_frames, 2), dtype=int)
    raw = start[None, :] + velocity[None, :] * np.arange(num_frames)[:, None]
    period = 2 * high
    raw = np.mod(raw, period)
    return np.where(raw > high, period - raw, raw)


def _moving_sprites(sprites: np.ndarray, num_clips: int, size: int, num_frames: int, rng) -> np.ndarray:
    """``[num_clips, T, size²]`` clips, each one sprite (drawn from ``sprites``) bouncing on a black canvas."""
    clips = np.zeros((num_clips, num_frames, size, size), dtype=np.float32)
    h, w = sprites.shape[1:]
    if h > size or w > size:
        raise ValueError(f"`frame_size` ({size}) must be at least the sprite size ({h}×{w}).")
    for i in range(num_clips):
        sprite = sprites[rng.integers(len(sprites))]
        start = np.array([rng.integers(size - h + 1), rng.integers(size - w + 1)])
        velocity = rng.choice([-2, -1, 1, 2], size=2)
        rows = _bounce(start[:1], velocity[:1], size - h, num_frames)[:, 0]
        cols = _bounce(start[1:], velocity[1:], size - w, num_frames)[:, 0]
        for t in range(num_frames):
            clips[i, t, rows[t] : rows[t] + h, cols[t] : cols[t] + w] = sprite
    return clips.reshape(num_clips, num_frames, size * size)


def moving_digits(
    num_train: int, num_test: int, frame_size: int = 16, num_frames: int = 8, seed: int = 0, test_fraction: float = 0.2
) -> dict[str, np.ndarray]:
    """Clean clips of scikit-learn's 8×8 digits bouncing on a ``frame_size²`` canvas: ``{"train", "test"}`` arrays
    ``[N, T, frame_size²]`` in [0, 1]. The digit images are split first (``test_fraction`` of the 1,797 to test), so no
    test clip shows an image seen in training."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError(
            "dataset_name='digits' needs scikit-learn (`pip install scikit-learn`); dataset_name='shapes' needs nothing."
        ) from err
    images = load_digits().images.astype(np.float32) / 16.0  # [1797, 8, 8], bundled with scikit-learn
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    num_test_images = round(test_fraction * len(images))
    test_images, train_images = images[order[:num_test_images]], images[order[num_test_images:]]
    return {
        "train": _moving_sprites(train_images, num_train, frame_size, num_frames, np.random.default_rng([seed, 0])),
        "test": _moving_sprites(test_images, num_test, frame_size, num_frames, np.random.default_rng([seed, 1])),
    }


def _shape_sprites(size: int) -> np.ndarray:
    """Squares, discs and crosses of a few sizes and brightnesses, on a ``size × size`` sprite."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    sprites = []
    for radius in np.linspace(1.5, (size - 1) / 2, 3):
        for level in (0.6, 0.8, 1.0):
            square = (np.abs(yy) <= radius) & (np.abs(xx) <= radius)
            disc = yy**2 + xx**2 <= radius**2
            cross = ((np.abs(yy) <= 0.5) | (np.abs(xx) <= 0.5)) & square
            sprites += [level * s for s in (square, disc, cross)]
    return np.stack(sprites).astype(np.float32)


def moving_shapes(
    num_train: int, num_test: int, frame_size: int = 16, num_frames: int = 8, seed: int = 0
) -> dict[str, np.ndarray]:
    """Clean clips of simple shapes bouncing on the canvas (numpy only); the splits use disjoint random streams."""
    sprites = _shape_sprites(max(3, min(7, frame_size // 2)))
    return {
        "train": _moving_sprites(sprites, num_train, frame_size, num_frames, np.random.default_rng([seed, 0])),
        "test": _moving_sprites(sprites, num_test, frame_size, num_frames, np.random.default_rng([seed, 1])),
    }


def _to_dataset(clean: np.ndarray, noise_std: float, seed: int, split_id: int, meta: dict | None = None) -> Dataset:
    """Rows ``noisy_frames`` (clean + N(0, noise_std²), seeded per example) and ``labels`` (clean) as torch tensors,
    plus the ``meta`` columns as Python values."""
    clean = np.asarray(clean, dtype=np.float32)
    noisy = np.empty_like(clean)
    for i in range(len(clean)):
        noise = np.random.default_rng([seed, 100 + split_id, i]).standard_normal(clean.shape[1:])
        noisy[i] = clean[i] + noise_std * noise.astype(np.float32)
    shape = tuple(clean.shape[1:]) if clean.ndim == 3 else (0, 0)
    features = {"noisy_frames": Array2D(shape, "float32"), "labels": Array2D(shape, "float32")}
    columns = {"noisy_frames": noisy, "labels": clean}
    for name, values in (meta or {}).items():
        features[name] = Value("string") if isinstance(values[0], str) else Value("int64")
        columns[name] = list(values)
    dataset = Dataset.from_dict(columns, features=Features(features))
    return dataset.with_format("torch", columns=["noisy_frames", "labels"], output_all_columns=True)


def impulse_noise(dataset: Dataset, fraction: float, seed: int = 0) -> Dataset:
    """The clips of ``dataset`` with salt-and-pepper noise on their input (``noisy_frames``): a share ``fraction`` of
    the pixels, drawn independently per pixel, set to 0 or 1 with equal odds; ``labels`` (the clean clips) unchanged.
    A shift that is not more of the Gaussian noise: a test of robustness the training corruption does not rehearse."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"`fraction` must be in [0, 1], got {fraction}.")
    noisy = np.asarray(dataset.with_format("numpy")["noisy_frames"], dtype=np.float32)
    rng = np.random.default_rng([seed, 7])
    hit = rng.random(noisy.shape) < fraction
    noisy = np.where(hit, (rng.random(noisy.shape) < 0.5).astype(np.float32), noisy)
    clean = np.asarray(dataset.with_format("numpy")["labels"], dtype=np.float32)
    features = Features({"noisy_frames": Array2D(noisy.shape[1:], "float32"), "labels": Array2D(clean.shape[1:], "float32")})
    shifted = Dataset.from_dict({"noisy_frames": noisy, "labels": clean}, features=features)
    return shifted.with_format("torch", columns=["noisy_frames", "labels"])


# --- Real videos ---


def find_videos(root: str, exclude_suffixes: Sequence[str] = ("_gt",)) -> list[str]:
    """Every video under ``root``, sorted: each folder that directly holds frame images is one video, each video file is
    one video. Folders whose name ends with one of ``exclude_suffixes`` (UCSD's ``Test001_gt`` masks) are skipped."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"No such folder: {root!r}.")
    videos = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.endswith(tuple(exclude_suffixes)) and not d.startswith("."))
        names = sorted(f for f in files if not f.startswith("."))
        if any(f.lower().endswith(IMAGE_EXTENSIONS) for f in names):
            videos.append(directory)
        videos += [os.path.join(directory, f) for f in names if f.lower().endswith(VIDEO_EXTENSIONS)]
    return videos


def _resize_grey(image, size: int) -> np.ndarray:
    """A PIL image → ``[size, size]`` float32 greyscale in [0, 1]."""
    from PIL import Image

    grey = image.convert("L").resize((size, size), Image.BILINEAR)
    return np.asarray(grey, dtype=np.float32) / 255.0


def _read_video_file(path: str, size: int, frame_step: int, max_frames: int | None) -> np.ndarray:
    try:
        import cv2
    except ImportError:
        cv2 = None
    frames = []
    if cv2 is not None:
        capture = cv2.VideoCapture(path)
        index = 0
        while max_frames is None or len(frames) < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            if index % frame_step == 0:
                grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
                frames.append(cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0)
            index += 1
        capture.release()
        if not frames:
            raise ValueError(f"OpenCV read no frame from {path!r}.")
        return np.stack(frames)
    try:
        import imageio.v3 as iio
    except ImportError as err:
        raise ImportError(
            f"Reading the video file {path!r} needs `opencv-python-headless` or `imageio` with `imageio-ffmpeg` "
            "(pip install opencv-python-headless); or extract its frames to a folder of images first."
        ) from err
    from PIL import Image

    for index, frame in enumerate(iio.imiter(path)):
        if max_frames is not None and len(frames) >= max_frames:
            break
        if index % frame_step == 0:
            frames.append(_resize_grey(Image.fromarray(np.asarray(frame)), size))
    if not frames:
        raise ValueError(f"imageio read no frame from {path!r}.")
    return np.stack(frames)


def read_frames(video: str, size: int, frame_step: int = 1, max_frames: int | None = None) -> np.ndarray:
    """The frames of one video (a folder of images or a video file) as ``[num_frames, size, size]`` in [0, 1]."""
    if os.path.isfile(video):
        return _read_video_file(video, size, frame_step, max_frames)
    from PIL import Image

    names = sorted(f for f in os.listdir(video) if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
    names = names[::frame_step][:max_frames]
    frames = []
    for name in names:
        with Image.open(os.path.join(video, name)) as image:
            frames.append(_resize_grey(image, size))
    return np.stack(frames)


def _video_clips(videos: Sequence[str], root: str, size: int, num_frames: int, stride: int, frame_step: int,
                 max_per_video: int | None, max_clips: int | None) -> tuple[np.ndarray, dict]:
    clips, names, starts = [], [], []
    for video in videos:
        if max_clips is not None and len(clips) >= max_clips:
            break
        max_frames = None if max_per_video is None else (max_per_video - 1) * stride + num_frames
        frames = read_frames(video, size, frame_step, max_frames).reshape(-1, size * size)
        for start in range(0, len(frames) - num_frames + 1, stride)[:max_per_video]:
            if max_clips is not None and len(clips) >= max_clips:
                break
            clips.append(frames[start : start + num_frames])
            names.append(os.path.relpath(video, root))
            starts.append(start)
    if not clips:
        raise ValueError(f"No clip of {num_frames} frames in the {len(videos)} videos under {root!r}.")
    return np.stack(clips), {"video": names, "start": starts}


def load_video_folder(
    train_dir: str,
    test_dir: str | None = None,
    frame_size: int = 16,
    num_frames: int = 8,
    noise_std: float = 0.2,
    seed: int = 0,
    clip_stride: int | None = None,
    frame_step: int = 1,
    max_clips_per_video: int | None = None,
    max_train_clips: int | None = None,
    max_test_clips: int | None = None,
    test_fraction: float = 0.2,
) -> DatasetDict:
    """Clips of the videos under ``train_dir`` and ``test_dir`` (see :func:`find_videos`).

    Without ``test_dir`` the videos under ``train_dir`` are split (``test_fraction`` of them, at random with ``seed``):
    train and test never share a video. ``clip_stride`` (default T: non-overlapping clips) is counted in kept frames,
    after ``frame_step``. Rows also carry ``video`` (path relative to its split folder) and ``start`` (first frame).
    """
    stride = clip_stride or num_frames
    if stride < 1 or frame_step < 1:
        raise ValueError(f"`clip_stride` and `frame_step` must be >= 1, got {clip_stride} and {frame_step}.")
    train_videos = find_videos(train_dir)
    if not train_videos:
        raise ValueError(f"No video (folder of {IMAGE_EXTENSIONS} frames or {VIDEO_EXTENSIONS} file) under {train_dir!r}.")
    if test_dir is None:
        order = np.random.default_rng(seed).permutation(len(train_videos))
        num_test = max(1, round(test_fraction * len(train_videos)))
        if num_test >= len(train_videos):
            raise ValueError(f"Cannot split {len(train_videos)} video(s) under {train_dir!r}: give a test folder.")
        test_videos = [train_videos[i] for i in sorted(order[:num_test])]
        train_videos = [train_videos[i] for i in sorted(order[num_test:])]
        test_root = train_dir
    else:
        test_videos, test_root = find_videos(test_dir), test_dir
    splits = {}
    for split_id, (split, videos, root, limit) in enumerate(
        (("train", train_videos, train_dir, max_train_clips), ("test", test_videos, test_root, max_test_clips))
    ):
        clips, meta = _video_clips(videos, root, frame_size, num_frames, stride, frame_step, max_clips_per_video, limit)
        splits[split] = _to_dataset(clips, noise_std, seed, split_id, meta)
    return DatasetDict(splits)
