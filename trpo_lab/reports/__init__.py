"""Reports over run folders: learning curves with a final-performance table (:mod:`.curves`) and the
NPG-vs-TRPO step-behaviour report (:mod:`.step_behavior`). Each has ``main(argv) -> int`` (a console script)."""
