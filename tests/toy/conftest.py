import pytest

from hypernet.toy import model


def shipped_model_available() -> bool:
    return (model.shipped_model_folder() / "model_index.json").is_file()


def shipped_judge_available() -> bool:
    return (model.shipped_model_folder() / "judge.safetensors").is_file()


@pytest.fixture(scope="session")
def toy_pipeline():
    if not shipped_model_available():
        pytest.fail("the shipped toy model is missing from src/hypernet/data/toy")
    return model.load_toy_pipeline()


@pytest.fixture(scope="session")
def toy_judge():
    from hypernet.toy import judge

    if not shipped_judge_available():
        pytest.fail("the shipped judge is missing from src/hypernet/data/toy")
    return judge.load_judge()
