"""`egoframe generate` end to end, in-process, on tiny saved models; each bad input exits 2 with one line."""

import json

import numpy as np
import pytest
from PIL import Image

from egoframe.cli.main import main


def run(argv, capsys):
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def frame(path, mode="RGB", size=(50, 42)):
    arr = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    if mode == "I;16":
        img = Image.fromarray(arr[..., 0].astype(np.uint16) * 257)  # uint16 -> mode "I;16"
    elif mode != "RGB":
        img = img.convert(mode)
    img.save(path)
    return path


BASE = ["generate", "--steps", "2"]


def test_generate_from_sd15_directory(tiny_sd_dir, tmp_path, capsys):
    out = tmp_path / "out.png"
    code, stdout, err = run(BASE + ["--model", str(tiny_sd_dir), "--image", str(frame(tmp_path / "in.png")),
                                    "--action", "cut tomato", "--out", str(out)], capsys)
    assert code == 0, err
    assert Image.open(out).size == (50, 42)  # made at the model's 32 px, resized back to the input's size
    assert str(out) in stdout


def test_single_frame_with_description_and_seed(tiny_desc_dir, tmp_path, capsys):
    args = ["--model", str(tiny_desc_dir), "--image", str(frame(tmp_path / "in.png")), "--action", "take cup",
            "--description", "the person takes the red cup with the left hand", "--seed", "3",
            "--image-scale", "2", "--text-scale", "1.2"]
    assert run(BASE + args + ["--out", str(tmp_path / "a.png")], capsys)[0] == 0
    assert run(BASE + args + ["--out", str(tmp_path / "b.png")], capsys)[0] == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))


@pytest.mark.parametrize("mode,note", [("L", "L converted to RGB"), ("RGBA", "composited on white"),
                                       ("I;16", "high bit depth"), ("P", "P converted to RGB")])
def test_image_modes_are_converted_with_a_note(tiny_desc_dir, tmp_path, capsys, mode, note):
    src = frame(tmp_path / "in.png", mode=mode)
    code, _, err = run(BASE + ["--model", str(tiny_desc_dir), "--image", str(src), "--action", "take cup",
                               "--out", str(tmp_path / "o.png")], capsys)
    assert code == 0, err
    assert note in err
    assert "resized from 50x42 to 32x32" in err  # not a multiple of 8: resized, and said so


def test_folder_and_resume(tiny_desc_dir, tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        frame(folder / f"f{i}.png")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "gen"
    code, stdout, err = run(BASE + ["--model", str(tiny_desc_dir), "--image", str(folder), "--action", "open drawer",
                                    "--out", str(out), "--batch-size", "2"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["f0.png", "f1.png", "f2.png"]
    (out / "f1.png").unlink()
    code, stdout, err = run(BASE + ["--model", str(tiny_desc_dir), "--image", str(folder), "--action", "open drawer",
                                    "--out", str(out)], capsys)
    assert code == 0
    assert stdout.strip().splitlines() == [str(out / "f1.png")]  # only the missing one is redone
    assert "2 output(s) already existed" in err


def test_batch_csv_and_jsonl(tiny_desc_dir, tmp_path, capsys):
    frame(tmp_path / "a.png")
    frame(tmp_path / "b.png")
    (tmp_path / "rows.csv").write_text("image,action,description\na.png,take cup,the left hand takes the cup\nb.png,cut tomato,\n")
    (tmp_path / "rows.jsonl").write_text(json.dumps({"image": "a.png", "action": "pour water", "out": "x.png"}) + "\n")
    code, stdout, err = run(BASE + ["--model", str(tiny_desc_dir), "--batch", str(tmp_path / "rows.csv")], capsys)
    assert code == 0, err
    assert len(stdout.strip().splitlines()) == 2
    code, stdout, err = run(BASE + ["--model", str(tiny_desc_dir), "--batch", str(tmp_path / "rows.jsonl")], capsys)
    assert code == 0, err
    assert (tmp_path / "x.png").exists()


def test_batch_grid_shows_input_generated_and_target(tiny_desc_dir, tmp_path, capsys):
    from PIL import Image

    frame(tmp_path / "a.png")
    frame(tmp_path / "b.png")
    frame(tmp_path / "t.png")
    (tmp_path / "rows.csv").write_text("image,action,target\na.png,take cup,t.png\nb.png,cut tomato,t.png\n")
    code, stdout, err = run(BASE + ["--model", str(tiny_desc_dir), "--batch", str(tmp_path / "rows.csv"),
                                    "--out", str(tmp_path / "gen"), "--grid", str(tmp_path / "grid.png")], capsys)
    assert code == 0, err
    assert f"grid: {tmp_path / 'grid.png'}" in stdout
    assert Image.open(tmp_path / "grid.png").size == (3 * 128, 14 + 2 * (128 + 14))  # 3 columns, 2 rows
    (tmp_path / "rows.csv").write_text("image,action\na.png,take cup\n")  # no target: two columns
    code, _, err = run(BASE + ["--model", str(tiny_desc_dir), "--batch", str(tmp_path / "rows.csv"),
                               "--out", str(tmp_path / "gen2"), "--grid", str(tmp_path / "grid2.png")], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "grid2.png").size == (2 * 128, 14 + 128 + 14)


def _bad_cases(tmp_path):
    good = frame(tmp_path / "good.png")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    text = tmp_path / "text.jpg"
    text.write_text("hello")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"image": "good.png", "action": "take cup"}\n{oops\n')
    return {
        "missing file": (["--image", str(tmp_path / "nope.png"), "--action", "x"], "image not found"),
        "corrupt image": (["--image", str(corrupt), "--action", "x"], "not a valid image"),
        "non-image file": (["--image", str(text), "--action", "x"], "not a valid image"),
        "empty file": (["--image", str(empty), "--action", "x"], "empty"),
        "empty action": (["--image", str(good), "--action", "   "], "action text is empty"),
        "huge action": (["--image", str(good), "--action", "cut " * 1000], "at most"),
        "malformed jsonl": (["--batch", str(rows)], "invalid JSON"),
        "wrong model dir": (["--image", str(good), "--action", "x", "--model", str(tmp_path)], "no model_index.json"),
    }


@pytest.mark.parametrize("case", ["missing file", "corrupt image", "non-image file", "empty file", "empty action",
                                  "huge action", "malformed jsonl", "wrong model dir"])
def test_bad_input_is_one_line_and_exit_2(tiny_desc_dir, tmp_path, capsys, case):
    args, message = _bad_cases(tmp_path)[case]
    if "--model" not in args:
        args = args + ["--model", str(tiny_desc_dir)]
    code, _, err = run(BASE + args + ["--out", str(tmp_path / "o.png")], capsys)
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_help_lists_every_command(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    assert "generate" in out


def test_model_recommended_sampling_is_used_unless_overridden(tiny_desc_dir, tmp_path, capsys):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_desc_dir, model)
    (model / "sampling.json").write_text(json.dumps({"num_inference_steps": 2, "image_guidance_scale": 1.2}))
    src = frame(tmp_path / "in.png")
    code, _, err = run(["generate", "--model", str(model), "--image", str(src), "--action", "take cup",
                        "--out", str(tmp_path / "a.png")], capsys)
    assert code == 0, err
    assert "sampling recommended by the model: num_inference_steps=2, image_guidance_scale=1.2" in err
    code, _, err = run(["generate", "--model", str(model), "--image", str(src), "--action", "take cup",
                        "--steps", "1", "--image-scale", "3", "--out", str(tmp_path / "b.png")], capsys)
    assert code == 0 and "recommended" not in err
    (model / "sampling.json").write_text(json.dumps({"cfg": 3}))
    code, _, err = run(["generate", "--model", str(model), "--image", str(src), "--action", "take cup",
                        "--out", str(tmp_path / "c.png")], capsys)
    assert code == 2 and "unknown keys" in err


def test_guidance_interval_from_the_model_or_the_command_line(tiny_desc_dir, tmp_path, capsys, monkeypatch):
    import shutil

    from diffusers import UNet2DConditionModel

    rows = []
    forward = UNet2DConditionModel.forward

    def spy(self, sample, *args, **kwargs):
        rows.append(sample.shape[0])
        return forward(self, sample, *args, **kwargs)

    monkeypatch.setattr(UNet2DConditionModel, "forward", spy)
    model = tmp_path / "model"
    shutil.copytree(tiny_desc_dir, model)
    (model / "sampling.json").write_text(json.dumps({"num_inference_steps": 4, "guidance_interval": [0.5, 1.0]}))
    src = frame(tmp_path / "in.png")
    args = ["generate", "--model", str(model), "--image", str(src), "--action", "take cup"]
    code, _, err = run(args + ["--out", str(tmp_path / "a.png")], capsys)
    assert code == 0, err
    assert rows == [1, 1, 3, 3]  # the first half unguided (one UNet row), the second half guided (three)
    assert "guidance_interval=(0.5, 1.0)" in err
    rows.clear()
    code, _, err = run(args + ["--guidance-interval", "0,1", "--out", str(tmp_path / "b.png")], capsys)
    assert code == 0 and rows == [3, 3, 3, 3]
    for bad, message in (("0.7,0.2", "guidance_interval must satisfy"), ("half", "expected LO,HI")):
        code, _, err = run(args + ["--guidance-interval", bad, "--out", str(tmp_path / "c.png")], capsys)
        lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
        assert code == 2 and len(lines) == 1 and message in lines[0], err


def test_channels_last_flag_generates_the_same_frame(tiny_desc_dir, tmp_path, capsys):
    src = frame(tmp_path / "in.png")
    args = BASE + ["--model", str(tiny_desc_dir), "--image", str(src), "--action", "take cup"]
    assert run(args + ["--out", str(tmp_path / "a.png")], capsys)[0] == 0
    assert run(args + ["--channels-last", "--out", str(tmp_path / "b.png")], capsys)[0] == 0
    a = np.asarray(Image.open(tmp_path / "a.png"), dtype=np.int16)
    b = np.asarray(Image.open(tmp_path / "b.png"), dtype=np.int16)
    assert np.abs(a - b).max() <= 1  # float rounding of other kernels can flip a uint8 step at most


def test_the_python_pipeline_samples_as_the_model_recommends_unless_told(tiny_desc_dir, tmp_path, monkeypatch):
    """pipe(image, action) with no sampling arguments uses the model's sampling.json (a tiny model's guidance is
    far below SD's), as `egoframe generate` does; explicit arguments win."""
    import shutil

    from diffusers import UNet2DConditionModel
    from PIL import Image

    from egoframe.pipelines.loading import load_pipeline

    rows = []
    forward = UNet2DConditionModel.forward

    def spy(self, sample, *args, **kwargs):
        rows.append(sample.shape[0])
        return forward(self, sample, *args, **kwargs)

    monkeypatch.setattr(UNet2DConditionModel, "forward", spy)
    model = tmp_path / "model"
    shutil.copytree(tiny_desc_dir, model)
    (model / "sampling.json").write_text(json.dumps({"num_inference_steps": 2, "guidance_interval": [0.5, 1.0]}))
    pipe = load_pipeline(str(model))
    image = Image.open(frame(tmp_path / "in.png")).convert("RGB")
    pipe(image, "take cup", description="the person takes the cup.", progress=False)
    assert rows == [1, 3]
    rows.clear()
    pipe(image, "take cup", description="the person takes the cup.", num_inference_steps=3,
         guidance_interval=(0.0, 1.0), progress=False)
    assert rows == [3, 3, 3]


# --- issue 19, section 4: every bad input is refused with one line, exit 2, before the model loads, and
# leaves no file behind


def assert_one_line_error(code, err, message):
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert "Traceback" not in err and "╭" not in err


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture
def model_must_not_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr("egoframe.pipelines.batch.load_model", refuse)


def _refused_cases(tmp_path, monkeypatch):
    import torch

    good = frame(tmp_path / "good.png")
    folder = tmp_path / "frames"
    folder.mkdir()
    frame(folder / "a.png")
    frame(folder / "b.png")
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "huge.csv").write_text("image,action\ngood.png,take cup\ngood.png," + "x" * 200_000 + "\n")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU-only torch, also on a GPU machine
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", None)
    image = ["--image", str(good), "--action", "take cup"]
    return {
        "out under a file": (image + ["--out", str(tmp_path / "a-file" / "o.png")], "is not a folder"),
        "out in a folder under a file": (image + ["--out", str(tmp_path / "a-file" / "sub" / "o.png")],
                                         "is not a folder"),
        "out under /sys": (image + ["--out", "/sys/egoframe-test/o.png"], "is not writable"),
        "unknown extension": (image + ["--out", str(tmp_path / "o.gif")], "'.gif' is not an image extension"),
        "no extension": (image + ["--out", str(tmp_path / "o")], "has no extension"),
        "seed overflow": (image + ["--seed", "18446744073709551616", "--out", str(tmp_path / "o.png")],
                          "seed 18446744073709551616 is out of range"),
        "seed + row overflow": (["--image", str(folder), "--action", "x", "--seed", str(2**64 - 1),
                                 "--out", str(tmp_path / "gen")], "is out of range"),
        "cuda on a CPU-only torch": (image + ["--device", "cuda", "--out", str(tmp_path / "o.png")],
                                     "has no CUDA support"),
        "unknown device": (image + ["--device", "quantum:9", "--out", str(tmp_path / "o.png")],
                           "unknown device 'quantum:9'"),
        "nan image scale": (image + ["--image-scale", "nan", "--out", str(tmp_path / "o.png")],
                            "'--image-scale': nan is not a finite number"),
        "inf text scale": (image + ["--text-scale", "inf", "--out", str(tmp_path / "o.png")],
                           "'--text-scale': inf is not a finite number"),
        "nan strength": (image + ["--strength", "nan", "--out", str(tmp_path / "o.png")], "not a finite number"),
        "inf prox quantile": (image + ["--prox-quantile", "-inf", "--out", str(tmp_path / "o.png")],
                              "not a finite number"),
        "nan guidance interval": (image + ["--guidance-interval", "nan,1", "--out", str(tmp_path / "o.png")],
                                  "must be finite numbers"),
        "csv field over the csv limit": (["--batch", str(tmp_path / "huge.csv")],
                                         "huge.csv:3: cannot read the CSV row: field larger than field limit"),
        "steps 0": (image + ["--steps", "0", "--out", str(tmp_path / "o.png")], "Invalid value for '--steps'"),
        "batch size 0": (image + ["--batch-size", "0", "--out", str(tmp_path / "o.png")], "'--batch-size'"),
        "seed not a number": (image + ["--seed", "abc", "--out", str(tmp_path / "o.png")], "'--seed'"),
        "misspelt option": (image + ["--stpes", "3", "--out", str(tmp_path / "o.png")], "No such option: --stpes"),
        "missing option value": (image + ["--out"], "requires an argument"),
    }


REFUSED = ["out under a file", "out in a folder under a file", "out under /sys", "unknown extension", "no extension",
           "seed overflow", "seed + row overflow", "cuda on a CPU-only torch", "unknown device", "nan image scale",
           "inf text scale", "nan strength", "inf prox quantile", "nan guidance interval",
           "csv field over the csv limit", "steps 0", "batch size 0", "seed not a number", "misspelt option",
           "missing option value"]


@pytest.mark.parametrize("case", REFUSED)
def test_refused_before_the_model_loads_with_one_line(tiny_desc_dir, tmp_path, capsys, monkeypatch,
                                                     model_must_not_load, case):
    import os

    if case == "out under /sys" and not os.path.isdir("/sys"):
        pytest.skip("no /sys on this system")
    args, message = _refused_cases(tmp_path, monkeypatch)[case]
    before = files_under(tmp_path)
    code, stdout, err = run(["generate", "--model", str(tiny_desc_dir)] + args, capsys)
    assert_one_line_error(code, err, message)
    assert stdout == ""
    assert files_under(tmp_path) == before  # nothing written, not even a probe or a folder


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
                    reason="root may write into a folder without write permission")
def test_out_in_a_folder_without_write_permission(tiny_desc_dir, tmp_path, capsys, model_must_not_load):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = run(["generate", "--model", str(tiny_desc_dir), "--image", str(frame(tmp_path / "in.png")),
                            "--action", "take cup", "--out", str(locked / "o.png")], capsys)
        assert_one_line_error(code, err, "is not writable")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_too_large_image_alone_says_its_size_and_the_limit(tiny_desc_dir, tmp_path, capsys, monkeypatch,
                                                          model_must_not_load):
    # Pillow refuses above 2 x MAX_IMAGE_PIXELS; a small limit stands in for a 30000x30000 file
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    big = frame(tmp_path / "big.png", size=(50, 50))
    code, _, err = run(["generate", "--model", str(tiny_desc_dir), "--image", str(big), "--action", "take cup",
                        "--out", str(tmp_path / "o.png")], capsys)
    assert_one_line_error(code, err, "too large to read safely: 2,500 pixels, over Pillow's decompression-bomb "
                                     "limit of 2,000 pixels")
    assert not (tmp_path / "o.png").exists()


def test_too_large_images_in_a_folder_are_skipped_and_counted(tiny_desc_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1100)  # refused above 2200 pixels; 32x32 = 1024 is read
    folder = tmp_path / "frames"
    folder.mkdir()
    frame(folder / "big.png", size=(50, 50))
    frame(folder / "ok.png", size=(32, 32))
    out = tmp_path / "gen"
    code, stdout, err = run(BASE + ["--model", str(tiny_desc_dir), "--image", str(folder), "--action", "take cup",
                                    "--out", str(out)], capsys)
    assert code == 0, err
    assert files_under(out) == ["ok.png"]
    assert stdout.strip().splitlines() == [str(out / "ok.png")]
    assert "1 input image(s) skipped: over Pillow's decompression-bomb limit" in err
    assert "big.png is too large to read safely: 2,500 pixels" in err
    (tmp_path / "rows.csv").write_text("image,action\nframes/big.png,take cup\nframes/ok.png,take cup\n")
    code, stdout, err = run(BASE + ["--model", str(tiny_desc_dir), "--batch", str(tmp_path / "rows.csv")], capsys)
    assert code == 0, err
    assert stdout.strip().splitlines() == [str(tmp_path / "rows-generated" / "00001-ok.png")]
    assert "1 input image(s) skipped" in err

    monkeypatch.setattr("egoframe.pipelines.batch.load_model", lambda *a: pytest.fail("model loaded"))
    only_big = tmp_path / "only-big"
    only_big.mkdir()
    frame(only_big / "a.png", size=(50, 50))
    frame(only_big / "b.png", size=(60, 60))
    code, _, err = run(BASE + ["--model", str(tiny_desc_dir), "--image", str(only_big), "--action", "take cup",
                               "--out", str(tmp_path / "gen2")], capsys)
    assert_one_line_error(code, err, "all 2 input images are too large to read safely")
    assert not (tmp_path / "gen2").exists()


def test_out_extension_names_the_format_written(tiny_desc_dir, tmp_path, capsys):
    src = frame(tmp_path / "in.png")
    for name, fmt in (("o.jpg", "JPEG"), ("o.webp", "WEBP")):
        code, _, err = run(BASE + ["--model", str(tiny_desc_dir), "--image", str(src), "--action", "take cup",
                                   "--out", str(tmp_path / name)], capsys)
        assert code == 0, err
        with Image.open(tmp_path / name) as written:
            assert written.format == fmt and written.size == (50, 42)
    assert files_under(tmp_path) == ["in.png", "o.jpg", "o.webp"]  # no temporary file left


def test_non_finite_sampling_recommended_by_the_model_is_refused(tiny_desc_dir, tmp_path, capsys):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_desc_dir, model)
    (model / "sampling.json").write_text(json.dumps({"image_guidance_scale": float("nan")}))  # NaN in the file
    code, _, err = run(BASE + ["--model", str(model), "--image", str(frame(tmp_path / "in.png")),
                               "--action", "take cup", "--out", str(tmp_path / "o.png")], capsys)
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "image_guidance_scale must be finite" in lines[0], err
    assert not (tmp_path / "o.png").exists()


def test_library_settings_refuse_what_the_cli_refuses(tmp_path, model_must_not_load):
    from egoframe.errors import ConfigError, InputError
    from egoframe.pipelines.batch import GenerateRow, GenerateSettings, generate_rows

    row = GenerateRow(image=frame(tmp_path / "in.png"), action="take cup", out=tmp_path / "o.png")
    for settings, message in ((GenerateSettings(image_guidance_scale=float("nan")), "image_guidance_scale"),
                              (GenerateSettings(guidance_interval=(0.0, float("inf"))), "guidance_interval"),
                              (GenerateSettings(seed=-(2**63) - 1), "out of range"),
                              (GenerateSettings(device="cuda:x"), "unknown device")):
        with pytest.raises((ConfigError, InputError), match=message):
            generate_rows([row], settings)
    assert files_under(tmp_path) == ["in.png"]


def test_device_index_past_the_visible_devices(monkeypatch):
    import torch

    from egoframe.errors import InputError
    from egoframe.utils.devices import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_device("cuda:0")
    with pytest.raises(InputError, match=r"'cuda:1' does not exist: 1 cuda device\(s\)"):
        check_device("cuda:1")
    with pytest.raises(InputError, match="cannot generate on 'meta'"):
        check_device("meta")
