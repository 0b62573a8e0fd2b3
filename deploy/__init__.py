"""Deployment tooling: CloudFormation templates, the Lambda bundle builder and the deploy helper."""
