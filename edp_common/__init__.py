"""What the emitter (edp) and the consumers share: boto3 clients and message envelopes."""
