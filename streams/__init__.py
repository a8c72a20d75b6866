"""The runtimes: the Faust app (Kafka mode), the in-process runner (embedded mode), and the CLI."""
