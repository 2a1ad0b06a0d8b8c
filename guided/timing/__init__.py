"""Time on this machine: measured throughput and the machine's condition (`speed`), per-layer latency tables
(`latency`), thread budgets (`threads`), durations as text (`clock`). A study's time estimates live in
`guided.pipeline.estimate` and `guided.pipeline.throughput`.
"""
