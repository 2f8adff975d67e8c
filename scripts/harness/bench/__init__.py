"""The benchmarks: training configurations (configs), timing, memory, the report, the two inference engines."""
