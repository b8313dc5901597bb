"""Benchmark runners (egoframe.siblings.benchmarks): masked metrics checked by hand, the three protocols end to
end on tiny random CLIP / DINO / LPIPS models, missing weights and bad input, and the CLI."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from egoframe.cli.main import main
from egoframe.errors import InputError, MissingWeightsError
from egoframe.evaluation import pixel
from egoframe.evaluation.clip_dino import ClipScorer, DinoScorer
from egoframe.evaluation.lpips import Lpips, save_lpips_weights
from egoframe.evaluation.pixel import ssim_map
from egoframe.evaluation.runner import MetricWeights
from egoframe.siblings.benchmarks.manifest import read_manifest
from egoframe.siblings.benchmarks.masks import (
    background_lpips,
    background_psnr,
    background_ssim,
    binarize_mask,
    foreground_crop,
)
from egoframe.siblings.benchmarks.protocols import BenchConfig
from egoframe.siblings.benchmarks.scoring import run_benchmark
from tests.evaluation.tiny_models import save_tiny_clip, save_tiny_dinov2

RESAMPLES = 200


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory):
    return save_tiny_dinov2(tmp_path_factory.mktemp("dino"))


@pytest.fixture(scope="module")
def lpips_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = Lpips.build("squeeze")
    for lin in model.lins:
        torch.nn.init.uniform_(lin[1].weight, 0.0, 1.0)  # real heads are non-negative
    folder = tmp_path_factory.mktemp("lpips")
    save_lpips_weights(model, folder)
    return folder


def _smooth_image(seed: int, size: int = 48) -> np.ndarray:
    """A random but spatially smooth uint8 image (SSIM / LPIPS see structure, not only noise)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(size // 8, size // 8, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(image).copy()


def _box_mask(size: int, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def _save(array: np.ndarray, path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return str(path)


def _one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------------------------- masked metrics


def test_background_psnr_by_hand():
    reference = np.full((16, 16, 3), 100, dtype=np.uint8)
    foreground = _box_mask(16, 4, 8, 4, 8)
    generated = reference.copy()
    generated[foreground] = 255  # the edit: only masked pixels change
    assert background_psnr(generated, reference, foreground) == math.inf
    assert math.isfinite(pixel.psnr(generated, reference))  # an unmasked PSNR would punish the edit
    generated[0, 0, 0] = 151  # one background value off by 51 / 255 = 0.2
    background_values = (16 * 16 - 16) * 3
    expected = 10 * math.log10(1.0 / (0.2 ** 2 / background_values))
    assert background_psnr(generated, reference, foreground) == pytest.approx(expected, rel=1e-12)


def test_ssim_map_matches_pixel_ssim():
    a, b = _smooth_image(0, 40), _smooth_image(1, 40)
    values, valid = ssim_map(a, b)
    assert valid.sum() == 30 * 30  # 5-pixel border excluded
    assert values[valid].mean() == pytest.approx(pixel.ssim(a, b), abs=1e-12)


def test_background_ssim_against_scikit_image():
    from skimage.metrics import structural_similarity

    reference = _smooth_image(2, 40)
    foreground = _box_mask(40, 12, 26, 10, 30)
    generated = reference.copy()
    generated[foreground] = 255 - generated[foreground]
    assert background_ssim(generated, reference, foreground) == pytest.approx(1.0, abs=1e-12)  # edit-only change
    rng = np.random.default_rng(3)
    generated[30:38, 2:20] = rng.integers(0, 256, size=(8, 18, 3))  # damage the background too
    # independent route: scikit-image's full SSIM map of the composite, averaged over valid background pixels
    composite = np.where(foreground[..., None], reference, generated) / 255.0
    _, full = structural_similarity(composite, reference / 255.0, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=1.0, channel_axis=-1, full=True)
    region = ~foreground
    region[:5], region[-5:], region[:, :5], region[:, -5:] = False, False, False, False
    expected = full.mean(axis=-1)[region].mean()
    assert background_ssim(generated, reference, foreground) == pytest.approx(expected, abs=1e-9)
    assert expected < 0.99


def test_background_lpips_ignores_the_edit(lpips_dir):
    lpips = Lpips.from_dir(lpips_dir, "squeeze")
    reference = _smooth_image(4)
    foreground = _box_mask(48, 10, 30, 12, 36)
    edited = reference.copy()
    edited[foreground] = 0
    assert background_lpips(lpips, edited, reference, foreground) == 0.0
    damaged = edited.copy()
    damaged[36:46, 2:40] = 255 - damaged[36:46, 2:40]
    value = background_lpips(lpips, damaged, reference, foreground)
    assert value > 0.0
    other_edit = damaged.copy()
    other_edit[foreground] = 77  # a different edit, same background: same score
    assert background_lpips(lpips, other_edit, reference, foreground) == pytest.approx(value, abs=1e-12)
    # no mask at all: the spatial map's mean is close to the plain LPIPS number (upsampling changes it slightly)
    empty = np.zeros((48, 48), dtype=bool)
    full_value = float(lpips([damaged], [reference])[0])
    assert background_lpips(lpips, damaged, reference, empty) == pytest.approx(full_value, rel=0.05)


def test_mask_binarised_at_half_and_resized_nearest(tmp_path):
    grey = np.zeros((16, 16), dtype=np.uint8)
    grey[0:8, 0:8] = 127  # just below 0.5 -> background
    grey[8:16, 0:8] = 128  # 128 / 255 >= 0.5 -> edited region
    grey[0:8, 8:16] = 255
    expected = grey >= 128
    assert np.array_equal(binarize_mask(Image.fromarray(grey), (16, 16)), expected)
    assert np.array_equal(binarize_mask(grey, (32, 32)), np.kron(expected, np.ones((2, 2), dtype=bool)))
    assert np.array_equal(binarize_mask(expected, (16, 16)), expected)  # bool and [0, 1] float arrays too
    assert np.array_equal(binarize_mask(grey / 255.0, (16, 16)), expected)
    # a JPEG mask's ringing (SmartEdit's *_mask.jpg files) disappears after binarising
    box = _box_mask(16, 3, 13, 5, 11)  # edges off the 8 x 8 JPEG blocks
    path = tmp_path / "mask.jpg"
    Image.fromarray(np.where(box, 255, 0).astype(np.uint8)).save(path, quality=75)
    noisy = np.asarray(Image.open(path).convert("L"))
    assert not np.all(np.isin(noisy, (0, 255)))
    assert np.array_equal(binarize_mask(Image.open(path), (16, 16)), box)


def test_foreground_crop_box_grown_to_square():
    image = np.arange(64 * 64 * 3, dtype=np.float64).reshape(64, 64, 3) / (64 * 64 * 3)
    crop = foreground_crop(image, _box_mask(64, 10, 30, 20, 30))  # 20 high, 10 wide -> 20 x 20 around it
    assert np.array_equal(crop, image[10:30, 15:35])
    crop = foreground_crop(image, _box_mask(64, 0, 20, 58, 64))  # at the right border: shifted inside
    assert np.array_equal(crop, image[0:20, 44:64])
    with pytest.raises(InputError, match="empty"):
        foreground_crop(image, np.zeros((64, 64), dtype=bool))


# ---------------------------------------------------------------------------------------------- protocols


def _reason_edit_set(tmp_path, n=4, wrong_mask_size=False):
    """n samples; generated = input with the masked box changed and a little background noise."""
    rows, expected_psnr = [], {}
    rng = np.random.default_rng(10)
    for i in range(n):
        image = _smooth_image(20 + i)
        foreground = _box_mask(48, 8 + i, 28 + i, 10, 30 + i)
        mask = np.where(foreground, 255, 0).astype(np.uint8)
        if wrong_mask_size and i == 1:
            mask = mask[:40, :40]
        generated = image.copy()
        generated[foreground] = 255 - generated[foreground]
        noise = rng.integers(-6, 7, size=image.shape)
        noisy = np.clip(generated.astype(int) + noise, 0, 255).astype(np.uint8)
        generated = np.where(foreground[..., None], generated, noisy)
        sample_id = f"cat{i % 2}/s{i}"
        _save(image, tmp_path / "data" / f"in{i}.png")
        _save(mask, tmp_path / "data" / f"in{i}_mask.png")
        _save(generated, tmp_path / "gen" / f"{sample_id}.png")
        diff = (generated.astype(float) - image.astype(float))[~foreground] / 255.0
        expected_psnr[sample_id] = 10 * math.log10(1.0 / np.mean(diff ** 2))
        rows.append({"id": sample_id, "input": f"data/in{i}.png", "mask": f"data/in{i}_mask.png",
                     "instruction": "replace the cup with a tomato", "target_phrase": "" if i == 3 else "tomato",
                     "scenario": "reasoning" if i % 2 else "understanding", "category": f"cat{i % 2}"})
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest, tmp_path / "gen", expected_psnr


def test_reason_edit_end_to_end(tmp_path, clip_dir, lpips_dir):
    manifest, generated, expected_psnr = _reason_edit_set(tmp_path)
    config = BenchConfig("reason-edit", weights=MetricWeights(clip=str(clip_dir), lpips=str(lpips_dir)),
                         resamples=RESAMPLES)
    report = run_benchmark(manifest, generated, tmp_path / "out", config)
    ids = [s.sample_id for s in report.samples]
    scores = report.scores["generated"]
    assert scores["bg-psnr"] == pytest.approx(np.array([expected_psnr[i] for i in ids]), rel=1e-12)
    assert np.all((scores["bg-ssim"] > 0) & (scores["bg-ssim"] < 1)) and np.all(scores["bg-lpips"] > 0)
    # fg-clip: the crop by hand (sample 0: box rows 8..27, cols 10..29 -> already square) with its phrase
    scorer = ClipScorer(clip_dir, needs_text=True)
    gen0 = np.asarray(Image.open(generated / "cat0" / "s0.png"))
    assert scores["fg-clip"][0] == pytest.approx(scorer.image_text([gen0[8:28, 10:30]], ["tomato"])[0], abs=1e-6)
    assert np.isnan(scores["fg-clip"][3])  # no target phrase
    assert scores["ins-clip"][1] == pytest.approx(
        scorer.image_text([np.asarray(Image.open(generated / "cat1" / "s1.png"))],
                          ["replace the cup with a tomato"])[0], abs=1e-6)

    summary = json.loads((tmp_path / "out" / "report.json").read_text())
    overall = summary["results"]["all"]["generated"]
    assert overall["bg-psnr"]["n"] == 4 and overall["fg-clip"]["n"] == 3 and overall["ins-clip"]["n"] == 4
    for metric in summary["metrics"]:
        assert overall[metric]["low"] <= overall[metric]["value"] <= overall[metric]["high"]
        assert overall[metric]["resamples"] == RESAMPLES
    assert overall["bg-psnr"]["value"] == pytest.approx(np.mean(list(expected_psnr.values())))
    assert summary["results"]["scenario=reasoning"]["generated"]["bg-psnr"]["n"] == 2
    assert summary["results"]["category=cat0"]["generated"]["bg-psnr"]["n"] == 2
    assert "binarised" in summary["definitions"]["bg-psnr"] and summary["mask_threshold"] == 0.5
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "bg-psnr ↑" in markdown and "bg-lpips ↓" in markdown and "n=3" in markdown
    rows = list(csv.DictReader((tmp_path / "out" / "scores.csv").read_text().splitlines()))
    assert len(rows) == 4 and rows[3]["fg-clip"] == "" and float(rows[0]["bg-psnr"]) == pytest.approx(
        expected_psnr[rows[0]["id"]])


def test_reason_edit_scores_at_the_generated_size(tmp_path):
    """A generated image twice the input's size: input resized bicubic, mask nearest; edit-only -> inf PSNR."""
    image = _smooth_image(30)
    foreground = _box_mask(48, 10, 30, 10, 30)
    _save(image, tmp_path / "in.png")
    _save(np.where(foreground, 255, 0).astype(np.uint8), tmp_path / "mask.png")
    from egoframe.evaluation.images import match_size

    big = np.round(match_size(image / 255.0, (96, 96)) * 255).astype(np.uint8)
    big[np.kron(foreground, np.ones((2, 2), dtype=bool))] = 0
    _save(big, tmp_path / "gen" / "a.png")
    (tmp_path / "m.json").write_text(json.dumps([{"id": "a", "input": "in.png", "mask": "mask.png",
                                                  "instruction": "remove it"}]))
    config = BenchConfig("reason-edit", metrics=["bg-psnr", "bg-ssim"], resamples=RESAMPLES)
    report = run_benchmark(tmp_path / "m.json", tmp_path / "gen", None, config)
    # 8-bit rounding of the resized input is the only background difference
    assert report.scores["generated"]["bg-psnr"][0] > 45
    assert report.scores["generated"]["bg-ssim"][0] > 0.999
    assert any("resized" in note for note in report.notes)
    with_size = BenchConfig("reason-edit", metrics=["bg-psnr"], size=48, resamples=RESAMPLES)
    assert run_benchmark(tmp_path / "m.json", tmp_path / "gen", None, with_size).summary["scoring_size"] == 48


def _target_set(tmp_path, protocol, n=3):
    rows = []
    for i in range(n):
        image, target = _smooth_image(40 + i, 40), _smooth_image(50 + i, 40)
        _save(image, tmp_path / "data" / f"in{i}.png")
        _save(target, tmp_path / "data" / f"tg{i}.png")
        row = {"id": f"p{i}", "input": f"data/in{i}.png", "target": f"data/tg{i}.png",
               "target_caption": "a red tomato on the board"}
        if protocol == "rp2p":
            row.update(direct_instruction="turn the cup into a tomato", reasoning_instruction="I am hungry")
            _save(_smooth_image(60 + i, 40), tmp_path / "gen" / "direct" / f"p{i}.png")
            _save(_smooth_image(70 + i, 40), tmp_path / "gen" / "reasoning" / f"p{i}.png")
        else:
            row.update(instruction="turn the cup into a tomato")
            _save(_smooth_image(60 + i, 40), tmp_path / "gen" / f"p{i}.png")
        rows.append(row)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return manifest, tmp_path / "gen"


def _load(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_magicbrush_end_to_end(tmp_path, clip_dir, dino_dir):
    manifest, generated = _target_set(tmp_path, "magicbrush")
    config = BenchConfig("magicbrush", metrics=["l1", "l2", "clip-i", "clip-t", "dino"], resamples=RESAMPLES,
                         weights=MetricWeights(clip=str(clip_dir), dino=str(dino_dir)))
    report = run_benchmark(manifest, generated, tmp_path / "out", config)
    gens = [_load(generated / f"p{i}.png") for i in range(3)]
    targets = [_load(tmp_path / "data" / f"tg{i}.png") for i in range(3)]
    scores = report.scores["generated"]
    by_hand_l1 = [np.mean(np.abs(g / 255.0 - t / 255.0)) for g, t in zip(gens, targets)]
    by_hand_l2 = [np.mean((g / 255.0 - t / 255.0) ** 2) for g, t in zip(gens, targets)]
    assert scores["l1"] == pytest.approx(np.array(by_hand_l1), rel=1e-12)
    assert scores["l2"] == pytest.approx(np.array(by_hand_l2), rel=1e-12)
    clip = ClipScorer(clip_dir, needs_text=True)
    assert scores["clip-i"] == pytest.approx(clip.image_image(gens, targets), abs=1e-6)
    assert scores["clip-t"] == pytest.approx(clip.image_text(gens, ["a red tomato on the board"] * 3), abs=1e-6)
    assert scores["dino"] == pytest.approx(DinoScorer(dino_dir).image_image(gens, targets), abs=1e-6)
    summary = json.loads((tmp_path / "out" / "report.json").read_text())
    assert summary["results"]["all"]["generated"]["l1"]["value"] == pytest.approx(np.mean(by_hand_l1))
    assert summary["results"]["all"]["generated"]["dino"]["n"] == 3


def test_rp2p_direct_and_reasoning_columns(tmp_path, clip_dir):
    manifest, generated = _target_set(tmp_path, "rp2p")
    config = BenchConfig("rp2p", metrics=["l1", "l2", "clip-t"], resamples=RESAMPLES,
                         weights=MetricWeights(clip=str(clip_dir)))
    report = run_benchmark(manifest, generated, tmp_path / "out", config)
    targets = [_load(tmp_path / "data" / f"tg{i}.png") / 255.0 for i in range(3)]
    l1 = {c: [np.mean(np.abs(_load(generated / c / f"p{i}.png") / 255.0 - targets[i])) for i in range(3)]
          for c in ("direct", "reasoning")}
    assert report.scores["direct"]["l1"] == pytest.approx(np.array(l1["direct"]), rel=1e-12)
    assert report.scores["reasoning"]["l1"] == pytest.approx(np.array(l1["reasoning"]), rel=1e-12)
    summary = json.loads((tmp_path / "out" / "report.json").read_text())
    assert set(summary["results"]["all"]) == {"direct", "reasoning"}
    paired = summary["paired"]["per_group"]["all"]["l1"]
    assert paired["difference"]["value"] == pytest.approx(np.mean(l1["reasoning"]) - np.mean(l1["direct"]))
    assert paired["difference"]["n"] == 3 and 0 < paired["p_value"] <= 1
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| direct |" in markdown and "| reasoning |" in markdown and "reasoning - direct" in markdown


# ---------------------------------------------------------------------------------------------- errors


def test_missing_weights_name_what_to_provide(tmp_path):
    manifest, generated, _ = _reason_edit_set(tmp_path)
    with pytest.raises(MissingWeightsError, match="--clip") as exc_info:
        run_benchmark(manifest, generated, None, BenchConfig("reason-edit", resamples=RESAMPLES))
    _one_line(exc_info)
    with pytest.raises(MissingWeightsError, match="--lpips"):
        run_benchmark(manifest, generated, None, BenchConfig("reason-edit", metrics=["bg-lpips"]))
    # pixel metrics alone need no weights
    report = run_benchmark(manifest, generated, None,
                           BenchConfig("reason-edit", metrics=["bg-psnr", "bg-ssim"], resamples=RESAMPLES))
    assert report.summary["results"]["all"]["generated"]["bg-ssim"]["n"] == 4
    manifest, generated = _target_set(tmp_path / "mb", "magicbrush")
    with pytest.raises(MissingWeightsError, match="--dino"):
        run_benchmark(manifest, generated, None, BenchConfig("magicbrush", metrics=["dino"]))


def test_bad_input_is_one_line(tmp_path):
    manifest, generated, _ = _reason_edit_set(tmp_path / "wrong", wrong_mask_size=True)
    with pytest.raises(InputError, match="40x40 but its input image is 48x48") as exc_info:
        run_benchmark(manifest, generated, None, BenchConfig("reason-edit", metrics=["bg-psnr"]))
    _one_line(exc_info)

    manifest, generated, _ = _reason_edit_set(tmp_path / "ok")
    cases = {
        "lacks column\\(s\\) mask": "id,input,instruction\na,data/in0.png,x\n",
        "mask file not found": "id,input,mask,instruction\na,data/in0.png,data/none.png,x\n",
        "duplicate id": "id,input,mask,instruction\na,data/in0.png,data/in0_mask.png,x\na,data/in0.png,"
                        "data/in0_mask.png,x\n",
        "empty instruction": "id,input,mask,instruction\na,data/in0.png,data/in0_mask.png,\n",
        "without '..'": "id,input,mask,instruction\n../a,data/in0.png,data/in0_mask.png,x\n",
        "more cells": "id,input,mask,instruction\na,data/in0.png,data/in0_mask.png,x,y\n",
    }
    for pattern, text in cases.items():
        bad = tmp_path / "ok" / "bad.csv"
        bad.write_text(text)
        with pytest.raises(InputError, match=pattern) as exc_info:
            read_manifest(bad, "reason-edit")
        _one_line(exc_info)
    (tmp_path / "ok" / "bad.json").write_text("[{\"id\": \"a\",}]")
    with pytest.raises(InputError, match="invalid JSON"):
        read_manifest(tmp_path / "ok" / "bad.json", "reason-edit")
    with pytest.raises(InputError, match="manifest not found"):
        read_manifest(tmp_path / "none.csv", "reason-edit")
    (generated / "cat0" / "s0.png").unlink()
    with pytest.raises(InputError, match="1 generated image\\(s\\) missing .*cat0/s0") as exc_info:
        run_benchmark(manifest, generated, None, BenchConfig("reason-edit", metrics=["bg-psnr"]))
    _one_line(exc_info)
    with pytest.raises(InputError, match="not part of the magicbrush protocol"):
        BenchConfig("magicbrush", metrics=["bg-psnr"]).check()
    with pytest.raises(InputError, match="unknown benchmark protocol"):
        BenchConfig("dreambench").check()


def test_full_mask_is_refused(tmp_path):
    _save(_smooth_image(1), tmp_path / "in.png")
    _save(np.full((48, 48), 255, dtype=np.uint8), tmp_path / "mask.png")
    _save(_smooth_image(2), tmp_path / "gen" / "a.png")
    (tmp_path / "m.csv").write_text("id,input,mask,instruction\na,in.png,mask.png,x\n")
    with pytest.raises(InputError, match="covers the whole image"):
        run_benchmark(tmp_path / "m.csv", tmp_path / "gen", None, BenchConfig("reason-edit", metrics=["bg-psnr"]))


# ---------------------------------------------------------------------------------------------- CLI


def _cli(argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code


def test_cli_bench_and_release_manifest(tmp_path, capsys):
    # the Reason-Edit release layout: category folders, X.png + X_mask.jpg, one "... CLIP: phrase" text file
    release = tmp_path / "ReasonEdit"
    for folder, names, text_name in (("1-Left-Right", ("a", "b"), "Left_Right_text.txt"),
                                     ("6-Reasoning", ("c",), "Reason_test.txt")):
        lines = []
        for k, name in enumerate(names):
            _save(_smooth_image(k + len(folder)), release / folder / f"{name}.png")
            Image.fromarray(np.where(_box_mask(48, 8, 24, 8, 24), 255, 0).astype(np.uint8)).save(
                release / folder / f"{name}_mask.jpg")
            lines.append(f"Replace the left cup with a tomato CLIP: tomato {name}")
        (release / folder / text_name).write_text("\n".join(lines) + "\n")
        for name in names:
            _save(_smooth_image(90), tmp_path / "gen" / folder / f"{name}.png")
    manifest = tmp_path / "bench" / "reason-edit.csv"
    assert _cli(["sibling", "bench-manifest", "--reason-edit", str(release), "--out", str(manifest)]) == 0
    samples = read_manifest(manifest, "reason-edit")
    assert [s.sample_id for s in samples] == ["1-Left-Right/a", "1-Left-Right/b", "6-Reasoning/c"]
    assert samples[1].text("instruction") == "Replace the left cup with a tomato"
    assert samples[1].text("target_phrase") == "tomato b" and samples[2].text("scenario") == "reasoning"
    assert samples[0].mask.name == "a_mask.jpg"
    capsys.readouterr()

    out = tmp_path / "report"
    code = _cli(["sibling", "bench", "--protocol", "reason-edit", "--manifest", str(manifest), "--generated",
                 str(tmp_path / "gen"), "--out", str(out), "--metrics", "bg-psnr,bg-ssim", "--resamples", "50"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Reason-Edit" in printed and "scenario=reasoning" in printed and (out / "report.json").is_file()

    code = _cli(["sibling", "bench", "--protocol", "reason-edit", "--manifest", str(manifest), "--generated",
                 str(tmp_path / "gen"), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and "--clip" in err and "\n" not in err
