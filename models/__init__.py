"""Transport-free logic: ingest, channels, simulator, and (later) the online models.

Nothing here imports Faust or Kafka; every class can be driven in memory by a test.
"""
