"""A transformer family's single file, as people download it (``flux1-dev.safetensors``, ``...-Q8_0.gguf``), runs
with the text encoders, tokenizers, VAE and scheduler of a diffusers folder of its family (its "components"): the
tiny random pipeline of each family (tests/tiny_families.py) is split into its transformer's weights, written as
one file, and the rest as a diffusers folder; the file with those components draws the very image the whole
folder draws at the same seed, through the Engine and the command line. A GGUF file (Q8_0 written with the gguf
package) stays quantized and draws nearly the same image. Components that are not named, incomplete or of another
family get one line that says what is missing.

The files are in diffusers' key layout: diffusers' converter from BFL's Flux layout hard-codes Flux.1's width
(3072, ``convert_flux_transformer_checkpoint_to_diffusers``), so a tiny Flux cannot be written in BFL's layout;
diffusers loads a file already in its own layout as it is (``_should_convert_state_dict_to_diffusers``)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from tiny_transformer_files import split

from desktop_app.engine.events import Finished
from desktop_app.engine.recipe import recipe_from_dict
from desktop_app.engine.request import GenerationRequest
from desktop_app.errors import ModelError
from desktop_app.models import components, model_files
from desktop_app.models.model_hash import components_record, model_hash

# tiny family -> (family key, the size it draws at, its sampler)
FAMILIES = {"flux": ("flux", 32, "Euler"), "sd3": ("sd3", 32, "Euler"), "chroma": ("chroma", 32, "Euler"),
            "z-image": ("z-image", 32, "Euler"), "flux2-klein": ("flux2-klein", 32, "Euler"),
            "qwen-image": ("qwen-image", 32, "Euler"), "sana": ("sana", 64, "Euler"),
            "sana-sprint": ("sana-sprint", 32, "Euler")}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return {name: split(name, tmp_path_factory.mktemp(name)) for name in FAMILIES}


@pytest.fixture(scope="module")
def engine():
    from desktop_app.engine.generate import Engine

    return Engine(device="cpu")


def draw(engine, model, name: str, seed: int = 7) -> tuple[np.ndarray, Finished]:
    family, size, sampler = FAMILIES[name]
    request = GenerationRequest(prompt="a red fox", model=str(model), steps=2, width=size, height=size,
                                sampler=sampler, guidance_scale=3.0, seed=seed, preview=False)
    result = engine.run(request, lambda event: None)
    assert isinstance(result, Finished) and result.recipe.family == family
    return np.asarray(result.images[0], dtype=np.int16), result


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_transformer_file_with_its_components_draws_the_folders_image(name, made, engine):
    files = made[name]
    info = model_files.inspect(files["file"])
    assert (info.kind, info.family) == ("checkpoint", FAMILIES[name][0])
    assert "Runs with the text encoders and VAE" in info.details
    components.set_for_family(info.family, files["components"])  # once per family, kept in the library
    expected, _ = draw(engine, files["whole"], name)
    image, result = draw(engine, files["file"], name)
    # the same image: the file and the folder load the same weights (within one level: a model loaded from one
    # file may lay its tensors out otherwise, and multithreaded CPU sums then round otherwise, seen on Qwen-Image)
    assert np.abs(image - expected).max() <= 1
    assert engine.model.components == files["components"].resolve()
    assert type(engine.model.pipe.transformer).__name__ == model_files.families.FAMILIES[info.family].denoiser
    # the recipe hashes the file itself (as AUTOMATIC1111 does for one file)
    assert result.recipe.model_hash == model_hash(files["file"]) != model_hash(files["whole"])
    # and names the components it ran with, read back from the PNG's recipe as it was written
    assert result.recipe.components == components_record(files["components"].resolve())
    assert recipe_from_dict(json.loads(json.dumps(result.recipe.to_dict()))).components == result.recipe.components
    # another seed, another image: the equality above is not two blank images
    other, _ = draw(engine, files["file"], name, seed=8)
    assert not np.array_equal(other, image)


@pytest.mark.parametrize("name", ["flux", "sd3"])
def test_a_gguf_file_stays_quantized_and_draws_nearly_the_same_image(name, made, engine):
    from diffusers.quantizers.gguf.utils import GGUFParameter

    files = made[name]
    assert files["quantized"] > 0
    info = model_files.inspect(files["gguf"])
    assert (info.kind, info.family) == ("checkpoint", FAMILIES[name][0])
    components.set_for_family(info.family, files["components"])
    expected, _ = draw(engine, files["file"], name)
    image, result = draw(engine, files["gguf"], name)
    weights = [p for p in engine.model.pipe.transformer.parameters() if isinstance(p, GGUFParameter)]
    assert len(weights) == files["quantized"]  # kept as Q8_0 blocks, dequantized per layer when run
    assert result.recipe.model_hash == model_hash(files["gguf"])
    difference = np.abs(image - expected)
    # measured: mean 0.14 (Flux) and 0.07 (SD3) of 255, at most 1; Q8_0 rounds, so not identical either
    assert difference.mean() < 1.0 and 0 < difference.max() <= 8, (difference.mean(), difference.max())
    assert image.std() > 5  # a picture, not a flat field that would be "close" to anything


def test_the_command_line_takes_components_for_one_run_and_from_the_library(made, tmp_path, capsys):
    from desktop_app.cli import main

    files = made["flux"]
    common = ["--steps", "2", "--width", "32", "--height", "32", "--seed", "3"]
    assert main(["generate", "a cat", "--model", str(files["whole"]), *common, "--out", str(tmp_path / "a.png")]) \
        == 0
    assert main(["generate", "a cat", "--model", str(files["file"]), "--components", str(files["components"]),
                 *common, "--out", str(tmp_path / "b.png")]) == 0
    whole, one_file = Image.open(tmp_path / "a.png"), Image.open(tmp_path / "b.png")
    assert np.array_equal(np.asarray(whole), np.asarray(one_file))
    recipe = json.loads(one_file.text["recipe"])
    assert recipe["family"] == "flux" and recipe["model_hash"] == model_hash(files["file"])
    assert recipe["sampler"] == "Euler" and recipe["guidance_scale"] == 3.5  # Flux.1's defaults, for a file too
    # named once in the library (`models components flux FOLDER`), then every run finds it
    capsys.readouterr()
    assert main(["models", "components", "flux", str(files["components"])]) == 0
    assert main(["models", "components"]) == 0
    assert f"flux: {files['components'].resolve()}" in capsys.readouterr().out
    assert main(["generate", "a cat", "--model", str(files["file"]), *common, "--out", str(tmp_path / "c.png")]) \
        == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "c.png")), np.asarray(whole))


def one_line_refusal(capsys, *args) -> str:
    from desktop_app.cli import main

    capsys.readouterr()
    assert main(["generate", "a cat", "--steps", "2", "--width", "32", "--height", "32", *map(str, args)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert "load:" not in captured.err  # refused before torch loads the model
    return lines[0]


def test_a_file_without_components_gets_one_line_naming_what_is_missing(made, tmp_path, capsys):
    file = made["flux"]["file"]
    line = one_line_refusal(capsys, "--model", file, "--out", tmp_path / "x.png")
    assert line == (f"desktop-app: error: Flux.1 transformer file {file.name} needs its text encoders, "
                    "tokenizers and VAE: name a Flux.1 diffusers folder as its components (in the window Models > "
                    "Components…, on the command line `desktop-app models components flux FOLDER`, or "
                    "--components FOLDER); single text-encoder and VAE files "
                    "(ComfyUI's models/text_encoders, models/vae) cannot serve as components.")
    assert not (tmp_path / "x.png").exists()


def test_incomplete_or_foreign_components_are_named(made, tmp_path, capsys):
    files = made["flux"]
    partial = tmp_path / "partial"
    shutil.copytree(files["components"], partial)
    shutil.rmtree(partial / "vae")
    for weights in (partial / "text_encoder_2").glob("*.safetensors"):
        weights.unlink()
    line = one_line_refusal(capsys, "--model", files["file"], "--components", partial, "--out", tmp_path / "x.png")
    assert "lacks text_encoder_2 weights (.safetensors), vae; name a Flux.1 diffusers folder" in line
    line = one_line_refusal(capsys, "--model", files["file"], "--components", made["sd3"]["components"],
                            "--out", tmp_path / "x.png")
    assert "is Stable Diffusion 3.x, not Flux.1" in line
    line = one_line_refusal(capsys, "--model", files["file"], "--components", tmp_path,
                            "--out", tmp_path / "x.png")
    assert "is not a diffusers model folder (no model_index.json)" in line
    line = one_line_refusal(capsys, "--model", files["whole"], "--components", files["components"],
                            "--out", tmp_path / "x.png")
    assert "Components apply to a single transformer file" in line
    with pytest.raises(ModelError, match="pixart-sigma is not a family whose transformer files run"):
        components.set_for_family("pixart-sigma", files["components"])
    assert components.stored() == {}  # nothing half-stored


def test_a_file_of_no_published_size_needs_the_components_transformer_config(made, tmp_path, engine):
    """Without transformer/config.json in the components, the bundled config of the file's published variant is
    used; a tiny file matches none, and the message says what to add."""
    files = made["flux"]
    bare = tmp_path / "bare"
    shutil.copytree(files["components"], bare)
    shutil.rmtree(bare / "transformer")
    components.set_for_family("flux", bare)
    # the engine may hold this file loaded with its full components: naming other components loads it again
    request = GenerationRequest(prompt="a fox", model=str(files["file"]), steps=2, width=32, height=32,
                                sampler="Euler", seed=1, preview=False)
    with pytest.raises(ModelError, match=r"of no published size, and its components folder .* has no "
                                         r"transformer/config\.json"):
        engine.run(request, lambda event: None)


def test_the_recipe_record_of_components_is_cheap_and_follows_their_configs(made, tmp_path):
    parts = tmp_path / "parts"
    shutil.copytree(made["flux"]["components"], parts)
    first = components_record(parts)
    assert first["path"] == str(parts) and len(first["hash"]) == 10
    (parts / "transformer" / "config.json").write_text("{}")  # the file replaces the transformer: not counted
    assert components_record(parts) == first
    config = parts / "scheduler" / "scheduler_config.json"
    config.write_text(config.read_text().replace("3.0", "2.0"))
    assert components_record(parts)["hash"] != first["hash"]
    assert components_record(None) is None


def test_gguf_content_is_checked(made, tmp_path):
    gguf_file = made["flux"]["gguf"]
    renamed = tmp_path / "model.safetensors"
    shutil.copy(gguf_file, renamed)
    with pytest.raises(ModelError, match="is a GGUF file: give it the .gguf extension"):
        model_files.inspect(renamed)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf_file.read_bytes()[:200])
    with pytest.raises(ModelError, match="damaged or truncated GGUF file"):
        model_files.inspect(cut)
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"\x80\x04not a gguf")
    with pytest.raises(ModelError, match="is not a GGUF file"):
        model_files.inspect(fake)


def test_a_components_part_that_cannot_be_read_is_one_line(made, tmp_path, monkeypatch):
    """A part of the components folder that cannot be listed (permissions) is a ModelError naming the folder,
    never an OSError traceback."""
    from pathlib import Path

    parts = tmp_path / "parts"
    shutil.copytree(made["flux"]["components"], parts)
    real = Path.iterdir

    def refuse(self):
        if self.name == "text_encoder_2":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "iterdir", refuse)
    with pytest.raises(ModelError, match="cannot be read: .*Permission denied"):
        components.check("flux", parts, "flux.safetensors")
