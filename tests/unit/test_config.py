import pytest

from whisper_inference.config import ConfigError, load_settings

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in (
        "MODEL_ID",
        "DTYPE",
        "VLLM_DTYPE",
        "VLLM_KV_CACHE_DTYPE",
        "TIMESTAMPS",
        "LANGUAGE_FORCE",
        "MAX_AUDIO_SECONDS",
        "WHISPER_WINDOW_SECONDS",
        "PORT",
        "SERVED_MODEL_NAME",
        "VLLM_ATTENTION_BACKEND",
        "VLLM_USE_FLASHINFER",
        "WHISPER_SAMPLING_RATE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODEL_ID", "openai/whisper-large-v3")


def test_defaults():
    s = load_settings()
    assert (s.dtype, s.kv_cache_dtype, s.timestamps_policy, s.sampling_rate, s.window_seconds) == (
        "auto",
        "fp16",
        "auto",
        16000,
        30.0,
    )
    assert s.max_audio_seconds == 3600 and s.language_force is None and s.port == 8080
    assert s.model_name == "whisper-large-v3"


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("half", "half"),
        ("float16", "half"),
        ("FP16", "half"),
        ("bf16", "bfloat16"),
        ("bfloat16", "bfloat16"),
        ("float32", "float32"),
        ("auto", "auto"),
    ],
)
def test_dtype_aliases(monkeypatch, raw, expected):
    monkeypatch.setenv("DTYPE", raw)
    assert load_settings().dtype == expected


def test_vllm_dtype_is_an_alias(monkeypatch):
    monkeypatch.setenv("VLLM_DTYPE", "bf16")
    assert load_settings().dtype == "bfloat16"


@pytest.mark.parametrize(
    "name,value",
    [
        ("DTYPE", "int4"),
        ("VLLM_KV_CACHE_DTYPE", "fp4"),
        ("TIMESTAMPS", "words"),
        ("MAX_AUDIO_SECONDS", "-1"),
        ("PORT", "http"),
        ("LANGUAGE_FORCE", "klingon"),
        ("WHISPER_WINDOW_SECONDS", "45"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_missing_model_id_names_it(monkeypatch):
    monkeypatch.delenv("MODEL_ID")
    with pytest.raises(ConfigError, match="MODEL_ID"):
        load_settings()


def test_language_force_normalized(monkeypatch):
    monkeypatch.setenv("LANGUAGE_FORCE", "German")
    assert load_settings().language_force == "de"


def test_served_model_name(monkeypatch):
    monkeypatch.setenv("SERVED_MODEL_NAME", "my-whisper")
    assert load_settings().model_name == "my-whisper"
