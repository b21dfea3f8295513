"""Template-driven local stack (`make run`): the SAM template's routes, queues and schedules on moto."""

from tools.localstack.stack import LocalStack

__all__ = ["LocalStack"]
