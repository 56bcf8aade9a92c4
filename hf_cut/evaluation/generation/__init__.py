"""Generation under noise: greedy answers with the trainer's noise hook (:mod:`.decode`), judged pairwise through
alpaca-eval (:mod:`.alpaca`, :mod:`.alpaca_data`, the offline :mod:`.local_annotator`), and the tables of judged runs
(:mod:`.report`)."""
