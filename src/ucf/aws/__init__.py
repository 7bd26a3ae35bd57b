"""ucf on AWS Lambda: the same use cases as ``ucf serve``, one function per job.

============================  ======================  ==========================================
function                      triggered by            does
============================  ======================  ==========================================
``handlers.api.handler``      API Gateway (HTTP API)  the one ASGI app: API, webhooks, dashboard
``handlers.schedule.handler`` EventBridge, 1/minute   one SQS message per instance that is due
``handlers.poll_worker``      SQS (the poll queue)    ``poll_instance`` per message
``handlers.delivery.handler`` the table's stream,     drains the outbox into the configured sinks
                              and EventBridge 1/min
============================  ======================  ==========================================

Every function opens one :class:`~ucf.service.context.UcfContext` per Lambda
execution environment (:mod:`ucf.aws.container`), on the DynamoDB store and
AWS Secrets Manager (:mod:`ucf.aws.config` refuses anything that would keep
state on a Lambda's private disk). ``deploy/template.yaml`` wires them up;
``docs/aws.md`` says how to deploy and what each piece costs.

Handler modules import almost nothing at module level: the work of a cold
start happens on the first invocation, and a module that is only imported
(a test collecting it, a packaging check) stays cheap.
"""
