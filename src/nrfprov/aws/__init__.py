"""The cloud half users deploy to their own AWS account (docs/aws.md).

- ``handler``: the split-topic certificate issuer and Fleet Provisioning pre-provisioning hook, the
  code that runs on AWS Lambda (and, behind its own registry, in the local stand-in);
- ``stack.json`` + ``fleet_template.json`` + ``template``: the CloudFormation template and its plan;
- ``deploy``, ``status``, ``claim``, ``things``: the ``nrfprov aws`` commands as library functions
  that return data (boto3, from the ``aws`` extra, is imported only when they run).

This room imports no device layer, and no device layer imports it.
"""
