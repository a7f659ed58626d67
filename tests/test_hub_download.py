"""Downloads by repo id against a local fake hub: progress, filtering, resume after a cut, cancel, verification."""

from __future__ import annotations

import shutil
import threading

import pytest
from fake_hub import FakeHub

from desktop_app.models import hub_download, model_library
from desktop_app.errors import CancelledError, ModelError

REPO = "someone/tiny-sd"
UNET = "unet/diffusion_pytorch_model.safetensors"


@pytest.fixture
def online(monkeypatch, tmp_path):
    """Network allowed for huggingface_hub (the autouse fixture sets HF_HUB_OFFLINE=1); only 127.0.0.1 exists."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))  # the library lists no real cache
    # small chunks, so that a cut mid-file leaves whole chunks written (real files: gigabytes in 10 MB chunks)
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 512)


@pytest.fixture
def repo_folder(tiny_sd_dir, tmp_path):
    """The tiny diffusers folder as a hub repo, plus files a download must leave alone."""
    folder = tmp_path / "repo"
    shutil.copytree(tiny_sd_dir, folder)
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    (folder / "vae" / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"variant")
    (folder / "full-checkpoint.safetensors").write_bytes(b"root single file")
    (folder / "README.md").write_text("# card\n")
    return folder


@pytest.fixture
def hub(repo_folder, online):
    server = FakeHub(REPO, repo_folder).start()
    yield server
    server.stop()


def _weights(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.safetensors"))


def test_download_gets_a_verified_diffusers_folder_with_progress(hub, repo_folder, tmp_path):
    seen = []
    result = hub_download.download(REPO, tmp_path / "models", progress=lambda d, t: seen.append((d, t)),
                                   endpoint=hub.url)
    assert result == tmp_path / "models" / "someone--tiny-sd"
    assert _weights(result) == sorted(p for p in _weights(repo_folder) if "/" in p and ".fp16." not in p)
    for name in ("model_index.json", UNET, "tokenizer/tokenizer.json", "scheduler/scheduler_config.json"):
        assert (result / name).read_bytes() == (repo_folder / name).read_bytes()
    requested = {file for _, file, _ in hub.requests}
    assert not any(f.endswith(".bin") or ".fp16." in f or f in ("full-checkpoint.safetensors", "README.md")
                   for f in requested)
    total = seen[-1][1]
    assert seen[-1][0] == total > 0
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)  # bytes only go up
    assert not (tmp_path / "models" / ".downloading" / "someone--tiny-sd").exists()
    # the result is a model the library accepts
    entry = model_library.add(result, name="tiny")
    assert entry.kind == "diffusers"


def test_cut_connection_resumes_with_a_range_request(hub, repo_folder, tmp_path):
    size = (repo_folder / UNET).stat().st_size
    hub.cut[UNET] = 1024
    result = hub_download.download(REPO, tmp_path / "models", endpoint=hub.url)
    assert (result / UNET).read_bytes() == (repo_folder / UNET).read_bytes()
    assert hub.gets(UNET) == [None, "bytes=1024-"]
    assert hub.served[UNET] == size


def test_interrupted_download_continues_in_a_second_call(hub, repo_folder, tmp_path):
    size = (repo_folder / UNET).stat().st_size
    hub.cut[UNET] = 1536
    hub.fail_after_cut = True
    with pytest.raises(ModelError, match="run the download again"):
        hub_download.download(REPO, tmp_path / "models", endpoint=hub.url)
    part = tmp_path / "models" / ".downloading" / "someone--tiny-sd" / (UNET + ".part")
    assert part.stat().st_size == 1536
    assert not (tmp_path / "models" / "someone--tiny-sd").exists()
    hub.heal()
    before = len(hub.gets(UNET))
    seen = []
    result = hub_download.download(REPO, tmp_path / "models", progress=lambda d, t: seen.append(d),
                                   endpoint=hub.url)
    assert hub.gets(UNET)[before:] == ["bytes=1536-"]
    assert hub.served[UNET] == size  # 1536 bytes the first time, the rest the second: nothing twice
    assert (result / UNET).read_bytes() == (repo_folder / UNET).read_bytes()
    assert seen[0] >= 1536  # the resumed bytes count as done from the start


def test_cancel_stops_and_registers_nothing(hub, tmp_path):
    cancel = threading.Event()

    def progress(done, total):
        if done > 0:
            cancel.set()

    with pytest.raises(CancelledError, match="cancelled"):
        hub_download.download(REPO, tmp_path / "models", progress=progress, cancel=cancel, endpoint=hub.url)
    assert not (tmp_path / "models" / "someone--tiny-sd").exists()
    assert not any(e.source != "embedded" for e in model_library.entries(hf_cache=False))
    # the next call finishes the job
    result = hub_download.download(REPO, tmp_path / "models", endpoint=hub.url)
    assert (result / "model_index.json").is_file()


def test_corrupted_file_fails_verification_and_is_deleted(hub, tmp_path):
    hub.corrupt.add(UNET)
    with pytest.raises(ModelError, match=r"unet/diffusion_pytorch_model.safetensors failed verification "
                                         r"\(its sha256 is [0-9a-f]{64}, the hub says [0-9a-f]{64}\)"):
        hub_download.download(REPO, tmp_path / "models", endpoint=hub.url)
    staging = tmp_path / "models" / ".downloading" / "someone--tiny-sd"
    assert not (staging / UNET).exists() and not (staging / (UNET + ".part")).exists()
    assert not (tmp_path / "models" / "someone--tiny-sd").exists()


def test_offline_mode_gives_a_clear_error(repo_folder, tmp_path):
    with pytest.raises(ModelError, match="offline mode is on"):
        hub_download.download(REPO, tmp_path / "models", endpoint="http://127.0.0.1:9")


def test_unknown_repo_and_bad_repo_id(hub, tmp_path):
    with pytest.raises(ModelError, match="not on the hub"):
        hub_download.download("someone/missing", tmp_path / "models", endpoint=hub.url)
    with pytest.raises(ModelError, match="owner/name"):
        hub_download.download("not a repo", tmp_path / "models", endpoint=hub.url)


SD15_FILES = """.gitattributes README.md feature_extractor/preprocessor_config.json model_index.json
safety_checker/config.json safety_checker/model.fp16.safetensors safety_checker/model.safetensors
safety_checker/pytorch_model.bin scheduler/scheduler_config.json text_encoder/config.json
text_encoder/model.fp16.safetensors text_encoder/model.safetensors text_encoder/pytorch_model.bin
tokenizer/merges.txt tokenizer/special_tokens_map.json tokenizer/tokenizer_config.json tokenizer/vocab.json
unet/config.json unet/diffusion_pytorch_model.bin unet/diffusion_pytorch_model.fp16.safetensors
unet/diffusion_pytorch_model.non_ema.safetensors unet/diffusion_pytorch_model.safetensors
v1-5-pruned-emaonly.ckpt v1-5-pruned-emaonly.safetensors v1-inference.yaml vae/config.json
vae/diffusion_pytorch_model.bin vae/diffusion_pytorch_model.fp16.safetensors
vae/diffusion_pytorch_model.safetensors
""".split()
SD15_INDEX = {"_class_name": "StableDiffusionPipeline",
              "feature_extractor": ["transformers", "CLIPImageProcessor"],
              "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
              "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
              "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
              "vae": ["diffusers", "AutoencoderKL"]}


def test_file_selection_on_the_sd15_repo_layout():
    from huggingface_hub.hf_api import RepoSibling

    chosen = hub_download.select_files([RepoSibling(rfilename=n) for n in SD15_FILES], SD15_INDEX)
    assert sorted(chosen) == [
        "feature_extractor/preprocessor_config.json", "model_index.json", "scheduler/scheduler_config.json",
        "text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer/merges.txt",
        "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
        "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors"]


def test_variant_only_weights_are_stored_under_the_plain_name():
    from huggingface_hub.hf_api import RepoSibling

    names = ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors"]
    chosen = hub_download.select_files([RepoSibling(rfilename=n) for n in names], {"unet": ["diffusers", "X"]})
    assert chosen["unet/diffusion_pytorch_model.safetensors"].rfilename == names[2]
    with pytest.raises(ModelError, match="pickled weights"):
        hub_download.select_files([RepoSibling(rfilename=n) for n in ("model_index.json", "unet/x.bin")])
    with pytest.raises(ModelError, match="no model_index.json"):
        hub_download.select_files([RepoSibling(rfilename="model.safetensors")])
