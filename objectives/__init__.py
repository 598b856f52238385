"""What a trial measures: the workload, the trial child process and its metrics."""
