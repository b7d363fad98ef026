"""The metrics tests run on the sink tests' servers and the pipeline tests' broker and model:
their fixtures, shared from here (pytest finds fixtures only in conftest modules)."""
from __future__ import annotations

from tests.pipeline.conftest import (broker, pg_schema, pipeline_env, redis_prefix,  # noqa: F401
                                     tiny_model_dir)
from tests.sink.conftest import (base_settings, engine, kafka_bootstrap, now,  # noqa: F401
                                 redis_client, session_engine, settings)
from tests.sink.test_consumer import topics  # noqa: F401
