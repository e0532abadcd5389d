"""A model directory is read once into a ``ModelDescription``: the description of each kind, old ``config.json`` files
(no kind, format 1 or none) still read, the format written, and consumers that follow the description's kind instead of
working it out again."""

from __future__ import annotations

import json
import shutil
import sys
import types
from dataclasses import replace

import pytest
import torch

from translate import Translator
from translate.evaluation import Evaluation, evaluate_model
from translate.inference.export import dynamic_axes, sample_input
from translate.inference.sampler import Sampler
from translate.networks import create_generator
from translate.networks.description import FORMAT_VERSION, MODEL_KINDS, Kind, ModelDescription, describe
from translate.networks.pretrained import generator_spec, load_pretrained, save_pretrained

DCGAN = {"netG": "dcgan", "nz": 16, "ngf": 8, "output_nc": 1, "image_size": 28}
SR = {"netG": "sr_resnet_x4", "input_nc": 3, "output_nc": 3, "ngf": 8, "n_blocks": 1}
GRAY_TO_RGB = generator_spec("resnet_6blocks", 8, "instance", False, 1, 3)
RGB_TO_GRAY = generator_spec("resnet_6blocks", 8, "instance", False, 3, 1)


def _save(directory, specs: dict, directions: dict, **meta):
    torch.manual_seed(0)
    nets = {n: create_generator(s["netG"], **{k: v for k, v in s.items() if k != "netG"}) for n, s in specs.items()}
    return save_pretrained(directory, nets, {"generators": specs, "directions": directions, **meta})


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, model_dir):
    """A model directory of each kind, as this translate writes them."""
    root = tmp_path_factory.mktemp("kinds")
    return {"translation": model_dir,
            "cyclegan": _save(root / "cyclegan", {"G_A": GRAY_TO_RGB, "G_B": RGB_TO_GRAY},
                              {"AtoB": "G_A", "BtoA": "G_B"}, recipe="cyclegan", step=7),
            "noise": _save(root / "dcgan", {"G": DCGAN}, {}, recipe="dcgan"),
            "super-resolution": _save(root / "sr", {"G": SR}, {"AtoB": "G"}, recipe="sr")}


def _with_config(source, target, **changes):
    """A copy of the model directory ``source`` whose config.json has ``changes`` (None: the key removed)."""
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    config.update(changes)
    (target / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not None}))
    return target


def test_each_kind_is_described(dirs):
    t = describe(dirs["translation"])
    assert (t.kind, t.scale, t.input_nc, t.output_nc, t.directions) == ("translation", 1, 3, 3, {"AtoB": "G"})
    assert t.generators["G"]["netG"] == "resnet_6blocks" and t.norm_mode == "eval" and t.normalize is None
    assert t.config["recipe"] == "pix2pix" and t.directory == dirs["translation"]
    assert t.behaviour.takes == "image" and t.files == ["config.json", "G.safetensors"]

    c = describe(dirs["cyclegan"])  # the channels of the first direction's generator
    assert (c.kind, c.input_nc, c.output_nc, c.config["step"]) == ("translation", 1, 3, 7)
    assert [c.generator(d) for d in (None, "AtoB", "BtoA", "G_B")] == ["G_A", "G_A", "G_B", "G_B"]
    with pytest.raises(ValueError, match="unknown direction 'CtoD'; this model has AtoB, BtoA"):
        c.generator("CtoD")

    n = describe(dirs["noise"])
    assert (n.kind, n.scale, n.input_nc, n.output_nc, n.directions) == ("noise", 1, None, 1, {})
    assert n.behaviour.takes == "noise" and n.behaviour.report == "strip" and n.generator() == "G"

    s = describe(dirs["super-resolution"])
    assert (s.kind, s.scale, s.input_nc, s.output_nc) == ("super-resolution", 4, 3, 3)
    assert s.behaviour.upscales and s.behaviour.takes == "image"
    assert describe(s) is s  # a description stands for its directory


def test_the_description_is_what_config_json_says(dirs):
    for name, directory in dirs.items():
        written = json.loads((directory / "config.json").read_text())
        assert written["format_version"] == FORMAT_VERSION == 2, name
        d = describe(directory)
        assert {k: written[k] for k in ("kind", "scale", "input_nc", "output_nc", "norm_mode")} == {
            "kind": d.kind, "scale": d.scale, "input_nc": d.input_nc, "output_nc": d.output_nc,
            "norm_mode": d.norm_mode}, name
        assert (written["generators"], written["directions"]) == (d.generators, d.directions)
        assert "normalize" not in written  # until a model is trained with data normalisation
        assert d.to_json() == {**written, "translate_version": d.to_json()["translate_version"]}


def test_a_normalisation_travels_with_the_model(tmp_path):
    stats = {"method": "minmax", "low": [0.0], "high": [4095.0]}
    d = describe(_save(tmp_path / "m", {"G": RGB_TO_GRAY}, {"AtoB": "G"}, normalize=stats))
    assert d.normalize == stats and json.loads((tmp_path / "m" / "config.json").read_text())["normalize"] == stats


@pytest.mark.parametrize("version", [1, None])
def test_old_config_json_is_still_read(dirs, tmp_path, version):
    """Directories written before format 2 (by training or by import-reference): no kind, scale or channels; they
    are worked out from the generators."""
    old = {"format_version": version, "kind": None, "scale": None, "input_nc": None, "output_nc": None}
    for name, expected in [("translation", ("translation", 1, 3, 3)), ("noise", ("noise", 1, None, 1)),
                           ("super-resolution", ("super-resolution", 4, 3, 3))]:
        directory = _with_config(dirs[name], tmp_path / name, **old)
        assert "kind" not in json.loads((directory / "config.json").read_text())
        d = describe(directory)
        assert (d.kind, d.scale, d.input_nc, d.output_nc) == expected, name
        assert d.config.get("format_version") == version
    x = torch.rand(3, 16, 16)
    torch.testing.assert_close(Translator.from_pretrained(tmp_path / "translation", device="cpu", dtype="fp32")(x),
                               Translator.from_pretrained(dirs["translation"], device="cpu", dtype="fp32")(x))
    assert Sampler.from_pretrained(tmp_path / "noise", device="cpu", dtype="fp32").tensor(2, seed=0).shape == \
        (2, 1, 28, 28)
    # Written again (e.g. by a tool that loads and saves), an old directory becomes the current format.
    _, nets = load_pretrained(tmp_path / "noise")
    again = save_pretrained(tmp_path / "again", nets, describe(tmp_path / "noise"))
    assert json.loads((again / "config.json").read_text())["format_version"] == FORMAT_VERSION
    assert describe(again).kind == "noise"


def test_a_one_generator_model_trained_btoa_before_directions_followed_the_data_is_read_as_now(dirs, tmp_path):
    """CUT trained with data.direction=BtoA wrote {"AtoB": "G"} until directions followed data.direction; its G
    reads the folders' B (the network's side A after the swap) and writes their A."""
    units = {"A": {"mode": "minmax", "min": [0.1] * 3, "max": [0.5] * 3},
             "B": {"mode": "minmax", "min": [0.6] * 3, "max": [0.9] * 3}}
    trained = {"data": {"direction": "BtoA", "dataset_mode": "unaligned"}}
    old = describe(_with_config(dirs["translation"], tmp_path / "cut", recipe="cut", directions={"AtoB": "G"},
                                config=trained, normalize=units))
    assert old.directions == {"BtoA": "G"} and old.sides("G") == ("A", "B")
    assert old.units("G") == (units["A"], units["B"])
    x = torch.rand(3, 16, 16)
    assert Translator.from_pretrained(tmp_path / "cut", device="cpu", dtype="fp32")(x).shape == x.shape
    # One folder (super-resolution) has no direction: its "AtoB" stays whatever data.direction said.
    sr = describe(_with_config(dirs["super-resolution"], tmp_path / "sr",
                               config={"data": {"direction": "BtoA", "dataset_mode": "single"}}))
    assert sr.directions == {"AtoB": "G"}


def test_newer_formats_and_unknown_kinds_are_refused(dirs, tmp_path):
    with pytest.raises(ValueError, match="format_version 3; this translate reads up to 2: upgrade translate"):
        describe(_with_config(dirs["translation"], tmp_path / "newer", format_version=3))
    with pytest.raises(ValueError, match="unknown kind of model 'inpainting'.*upgrade translate"):
        describe(_with_config(dirs["translation"], tmp_path / "kind", kind="inpainting"))


# --- consumers take the kind the description states -------------------------------------------------------------------
def test_the_stated_kind_decides_what_runs_a_model(dirs, tmp_path):
    """A same-size generator in a directory that says "noise": Translator and the sampler go by the statement, not
    by the generator registry."""
    said_noise = _with_config(dirs["translation"], tmp_path / "noise", kind="noise")
    with pytest.raises(ValueError, match="this model generates from noise: use translate sample"):
        Translator.from_pretrained(said_noise, device="cpu")
    said_image = _with_config(dirs["noise"], tmp_path / "image", kind="translation")
    with pytest.raises(ValueError, match="this model translates images: use translate convert"):
        Sampler.from_pretrained(said_image, device="cpu")


def test_the_stated_kind_picks_the_evaluator(dirs, tmp_path, monkeypatch):
    """`translate eval` runs the evaluator that the kind's row of MODEL_KINDS names, whatever the generators are."""
    seen = []

    def evaluate_toy(description, data, **options):
        seen.append((description.kind, data, options["direction"], options["seed"]))
        return Evaluation(info={"split": options["split"], "direction": "toy"})

    monkeypatch.setitem(sys.modules, "toy_kind", types.SimpleNamespace(evaluate_toy=evaluate_toy))
    monkeypatch.setitem(MODEL_KINDS, "toy", Kind("image", False, "toys", "translate convert",
                                                 "toy_kind:evaluate_toy", "grids"))
    result = evaluate_model(_with_config(dirs["translation"], tmp_path / "toy", kind="toy"), "DATA", direction="AtoB",
                            seed=1, device="cpu")
    assert seen == [("toy", "DATA", "AtoB", 1)] and result.info["model"] == str(tmp_path / "toy")
    # A new kind needs its row only: the Translator takes it as its row says.
    assert Translator.from_pretrained(tmp_path / "toy", device="cpu", dtype="fp32").description.kind == "toy"


def test_export_traces_what_the_description_says(dirs):
    t, n = describe(dirs["translation"]), describe(dirs["noise"])
    assert dynamic_axes(t)["output"] == {0: "batch", 2: "height", 3: "width"}
    assert dynamic_axes(replace(t, scale=4))["output"] == {0: "batch", 2: "out_height", 3: "out_width"}
    assert dynamic_axes(n) == {"input": {0: "batch"}, "output": {0: "batch"}}
    assert sample_input(t, "G", 8, 12).shape == (1, 3, 8, 12)
    assert sample_input(n, "G", 8, 12, batch=3).shape == (3, 16)
    assert sample_input(replace(t, kind="noise", generators={"G": {**t.generators["G"], "nz": 5}}), "G", 8,
                        8).shape == (1, 5)


def test_a_description_is_frozen(dirs):
    d = describe(dirs["translation"])
    with pytest.raises(AttributeError):
        d.kind = "noise"
    assert isinstance(d, ModelDescription) and "config=" not in repr(d)
