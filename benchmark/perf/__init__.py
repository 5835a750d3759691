"""Speed and cost scripts (one module per task or subject).  The one place under benchmark/ that may import
tasks and datamodules freely: ``python -m benchmark.perf.<name>``."""
