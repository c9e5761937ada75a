"""Every built model is a consistent bindle: invoice labels match the files, metadata is complete."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from waft import models
from waft.bindle.invoice import invoice_from_dict

ROUTES = ["identity", "plus3", "effnetlite0", "effnetlite1", "effnetlite2"]
ORIGINAL_FIELDS = ("model_name", "graph_encoding", "execution_target", "tensor_type", "tensor_dimensions_in",
                   "tensor_dimensions_out")
ADDED_FIELDS = ("input_spec", "outputs_probabilities", "labels", "input_name", "output_name")
SPEC_224 = {"size": [224, 224], "layout": "NCHW", "resize": "shorter_side", "resize_to": 256, "crop": "center",
            "mean": [127, 127, 127], "std": [128, 128, 128], "dtype": "f32", "color": "RGB", "resample": "bilinear"}


def test_index_lists_every_route(index: dict[str, Any]) -> None:
    assert list(index) == ROUTES
    for route, item in index.items():
        assert item["bindle_id"] == models.get(route).bindle_id
    assert index["identity"]["bindle_id"] == "identity_model/0.2.0"
    assert index["plus3"]["bindle_id"] == "plus3/0.1.0"
    assert index["effnetlite0"]["files"] == {"model": "efficientnet-lite0.onnx", "metadata": "metadata.json",
                                             "labels": "labels.txt", "invoice": "invoice.toml"}


@pytest.mark.parametrize("route", ROUTES)
def test_invoice_matches_files(built_models: Path, index: dict[str, Any], route: str) -> None:
    directory = built_models / route
    text = (directory / "invoice.toml").read_text()
    doc = tomllib.loads(text)
    assert doc["bindleVersion"] == "1.0.0"
    assert f"{doc['bindle']['name']}/{doc['bindle']['version']}" == index[route]["bindle_id"]
    groups = [g["name"] for g in doc["group"]]
    expected_groups = ["model", "metadata", "labels"] if route.startswith("effnet") else ["model", "metadata"]
    assert groups == expected_groups
    assert all(g["required"] is True and g["satisfiedBy"] == "allOf" for g in doc["group"])
    by_group = {}
    for parcel in doc["parcel"]:
        label = parcel["label"]
        data = (directory / label["name"]).read_bytes()
        assert label["size"] == len(data), label["name"]
        assert label["sha256"] == hashlib.sha256(data).hexdigest(), label["name"]
        (group,) = parcel["conditions"]["memberOf"]
        by_group[group] = label
    assert list(by_group) == expected_groups
    assert by_group["model"]["mediaType"] == "application/octet-stream"
    assert by_group["metadata"]["mediaType"] == "application/json"
    assert "[[group]]" in text and "[[parcel]]" in text
    invoice_from_dict(doc)  # the bindle server's strict schema (deny_unknown_fields) accepts it


@pytest.mark.parametrize("route", ROUTES)
def test_metadata_has_all_fields(built_models: Path, route: str) -> None:
    meta = json.loads((built_models / route / "metadata.json").read_text())
    assert set(meta) == {*ORIGINAL_FIELDS, *ADDED_FIELDS}
    assert meta["execution_target"] == "cpu" and meta["tensor_type"] == "F32"
    assert meta["graph_encoding"] == ("tensorflow" if route == "plus3" else "onnx")
    assert meta["outputs_probabilities"] is False
    if route.startswith("effnet"):
        assert meta["labels"] == "imagenet1k-synsets"
        assert (meta["input_name"], meta["output_name"]) == ("input", "logits")
        size = meta["tensor_dimensions_in"][2]
        assert meta["tensor_dimensions_in"] == [1, 3, size, size] and meta["tensor_dimensions_out"] == [1, 1000]
        assert meta["input_spec"]["size"] == [size, size] and meta["input_spec"]["resize_to"] == size + 32
    else:
        assert meta["input_spec"] is None and meta["labels"] is None
        assert meta["tensor_dimensions_in"] == meta["tensor_dimensions_out"] == [1, 4]
    if route == "effnetlite0":
        assert meta["input_spec"] == SPEC_224


def test_labels_are_the_imagenet_synsets(built_models: Path) -> None:
    text = (built_models / "effnetlite0" / "labels.txt").read_text()
    lines = text.splitlines()
    assert len(lines) == 1000 and text.endswith("\n")
    assert lines[0] == "n01440764 tench, Tinca tinca"
    assert lines[147].split(" ", 1)[1].startswith("grey whale")
    assert lines[281] == "n02123045 tabby, tabby cat"
    assert lines[457].split(" ", 1)[1].startswith("bow tie")
    assert lines[999].startswith("n15075141 toilet tissue")
    assert all(len(line.split(" ", 1)[0]) == 9 and line[0] == "n" for line in lines)
    assert len({line.split(" ", 1)[0] for line in lines}) == 1000
    # the ONNX model zoo's synset.txt, which the original's post-processor embedded line for line
    assert hashlib.sha256(text.encode()).hexdigest().startswith("acf75ef0")
