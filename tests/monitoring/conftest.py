from tests.training.conftest import (  # noqa: F401 (fixtures)
    feast_registry,
    model_resources,
    training_set_file,
)
