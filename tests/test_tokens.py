"""Word pieces as an input (``tokens@COLUMN``): parsing, tokenising with MiniLM's and a
checkpoint's tokenizer, the gathered input, and how training's input path treats it
(int64 ids sliced like a sequence, never standardised or perturbed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmtk.errors import DataError, UsageError
from mmtk.features import FeatureRef, GatherContext, drop_incomplete, gather_inputs, parse_feature_refs, required_columns
from mmtk.tokens import TOKENS, check_recorded, check_token_model, tokenize, tokenizer_record
from tiny_models import save_tiny_bert


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tok") / "tiny-bert")


def write_dataset(folder: Path, texts: list, name: str = "data.jsonl"):
    from mmtk.data import read_dataset

    rows = [{"id": str(i), "text": text, "label": i % 2} for i, text in enumerate(texts)]
    (folder / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
    return read_dataset(folder / name, optional=["text"])


@pytest.mark.parametrize(
    "text, backbone, column, name",
    [
        ("tokens@text", TOKENS, "text", "tokens@text"),
        ("tokens", TOKENS, None, "tokens"),
        ("tokens:minilm@caption", TOKENS, "caption", "tokens@caption"),
        (" tokens@Review Text ", TOKENS, "Review Text", "tokens@Review Text"),
    ],
)
def test_references_name_the_tokenizer_and_column(text, backbone, column, name):
    ref = FeatureRef.parse(text)
    assert (ref.backbone, ref.column, ref.name, ref.source, ref.sequence) == (backbone, column, name, "tokens", False)
    assert FeatureRef.from_json(ref.to_json()) == ref


def test_a_tokenizer_directory_is_recorded_absolute(tiny_dir, monkeypatch):
    monkeypatch.chdir(tiny_dir.parent)
    ref = FeatureRef.parse(f"tokens:{tiny_dir.name}@text")
    assert ref.backbone == f"tokens:{tiny_dir.resolve()}"
    assert ref.column == "text"
    # Without a column the whole text is the directory, even one with '@' in its name.
    odd = tiny_dir.parent / "bert@v2"
    odd.symlink_to(tiny_dir, target_is_directory=True)
    assert FeatureRef.parse(f"tokens:{odd}").column is None


@pytest.mark.parametrize(
    "text, fragment",
    [("tokens@", "ends with '@'"), ("tokens:", "names no tokenizer"), ("tokens:/no/such/dir@text", "not found"),
     ("tokens:minilm:seq@text", "take no ':seq'")],
)
def test_malformed_references_are_one_line_usage_errors(text, fragment):
    with pytest.raises(UsageError, match=fragment) as info:
        FeatureRef.parse(text)
    assert "\n" not in str(info.value)


def test_minilm_pieces_start_with_cls_end_with_sep_and_are_cut_to_max_length():
    ids, lengths = tokenize(["Hello world!", "", "one two three four five six seven"], TOKENS, 6)
    assert ids.dtype == np.int64 and ids.shape == (3, 6)
    assert lengths.tolist() == [5, 2, 6]
    assert ids[0].tolist() == [101, 7592, 2088, 999, 102, 0]  # [CLS] hello world ! [SEP], padded with 0
    assert ids[1].tolist() == [101, 102, 0, 0, 0, 0]
    assert ids[2, 0] == 101 and ids[2, 5] == 102  # truncation keeps [SEP]


def test_a_checkpoints_tokenizer_uses_its_own_vocabulary(tiny_dir):
    spec = FeatureRef.parse(f"tokens:{tiny_dir}@text").backbone
    vocab = (tiny_dir / "vocab.txt").read_text().split()
    ids, lengths = tokenize(["the cat is funny"], spec, 16)
    assert [vocab[i] for i in ids[0, : lengths[0]]] == ["[CLS]", "the", "cat", "is", "funny", "[SEP]"]
    record = tokenizer_record(spec)
    assert record["vocab_size"] == len(vocab)
    assert record["tokenizer_sha256"] != tokenizer_record(TOKENS)["tokenizer_sha256"]
    assert tokenizer_record(spec) == record  # stable across calls (truncation state is left out)


def test_gathered_word_pieces(tmp_path):
    dataset = write_dataset(tmp_path, ["a funny cat", "", "the weather is nice today"])
    ref = FeatureRef.parse("tokens@text")
    gathered = gather_inputs(dataset, [ref], GatherContext(missing="mask"))["tokens@text"]
    assert (gathered.kind, gathered.dim) == ("tokens", 30522)
    assert gathered.values.dtype == np.int64
    assert gathered.present.tolist() == [True, False, True]
    assert gathered.values[1, :2].tolist() == [101, 102]  # an absent text is [CLS] [SEP]
    assert gathered.lengths.tolist() == [5, 2, 7]
    part = gathered.subset([2, 0])
    assert (part.kind, part.dim, part.lengths.tolist()) == ("tokens", 30522, [7, 5])


def test_an_absent_text_is_refused_unless_a_missing_modality_policy_says_otherwise(tmp_path):
    dataset = write_dataset(tmp_path, ["a funny cat", ""])
    with pytest.raises(DataError, match=r"data.jsonl:2 \(item '1'\): no text value for feature tokens@text"):
        gather_inputs(dataset, [FeatureRef.parse("tokens@text")], GatherContext(missing="fail"))
    kept = drop_incomplete(dataset, ["tokens@text"])
    assert [r.id for r in kept.records] == ["0"]
    assert "no tokens@text input" in kept.skipped[-1].reason


def test_word_pieces_need_a_text_column(tmp_path):
    from mmtk.data import read_dataset

    (tmp_path / "img.png").write_bytes(b"x")
    (tmp_path / "d.jsonl").write_text(json.dumps({"id": "0", "img": "img.png", "text": "hi", "label": 0}) + "\n")
    dataset = read_dataset(tmp_path / "d.jsonl")
    with pytest.raises(UsageError, match="column 'img' holds image, not text"):
        gather_inputs(dataset, [FeatureRef.parse("tokens@img")], GatherContext())
    assert required_columns(["tokens", "tokens@caption"]) == ["text", "caption"]


def test_training_inputs_keep_ids_as_int64_sliced_like_sequences_and_unstandardised(tmp_path):
    from mmtk.training.data import input_specs, memory_source
    from mmtk.training.normalize import Standardizer

    dataset = write_dataset(tmp_path, ["a funny cat", "hi", "the weather is nice today"])
    gathered = gather_inputs(dataset, [FeatureRef.parse("tokens@text")], GatherContext())
    spec = input_specs(gathered)["tokens@text"]
    assert (spec.kind, spec.dim, spec.max_len, spec.is_tokens, spec.is_sequence) == ("tokens", 30522, 7, True, False)
    assert Standardizer.fit(gathered, "all") is None  # nothing to standardise
    source = memory_source(gathered, {"label": torch.zeros(3, dtype=torch.long)}, None, "cpu")
    batch = source.take(torch.tensor([1, 0]))
    ids = batch.features["tokens@text"]
    assert ids.dtype == torch.int64 and ids.shape == (2, 5)  # cut to the batch's longest item
    assert batch.masks["tokens@text"].tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert ids[0, 3:].tolist() == [0, 0]


def test_fgsm_leaves_word_pieces_alone():
    from mmtk.training.batch import Batch
    from mmtk.training.objectives import TOTAL

    FGSMObjective = pytest.importorskip("mmtk.training.perturb").FGSMObjective  # another change adds it

    seen = []

    class Inner:
        def __call__(self, model, batch):
            seen.append({name: x.clone() for name, x in batch.features.items()})
            emb = model(batch.features["t"]).sum(dim=1) + batch.features["v"]
            return {TOTAL: emb.pow(2).sum()}

    model = torch.nn.Embedding(10, 3)
    batch = Batch({"t": torch.tensor([[1, 2], [3, 0]]), "v": torch.ones(2, 3)})
    FGSMObjective(Inner(), 0.5)(model, batch)
    assert all(torch.equal(call["t"], batch.features["t"]) for call in seen)
    assert not torch.equal(seen[-1]["v"], batch.features["v"])


def test_a_changed_tokenizer_is_refused(tiny_dir, tmp_path):
    import shutil

    copy = tmp_path / "tok"
    shutil.copytree(tiny_dir, copy)
    spec = FeatureRef.parse(f"tokens:{copy}@text").backbone
    entry = {"ref": f"{spec}@text", "backbone": spec, **tokenizer_record(spec)}
    check_recorded(entry, tmp_path / "run")
    vocab = (copy / "vocab.txt").read_text().split()
    vocab[5], vocab[6] = vocab[6], vocab[5]  # two pieces swap ids
    (copy / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (copy / "tokenizer.json").unlink()  # rebuilt from vocab.txt
    with pytest.raises(UsageError, match="the ids would name other word pieces"):
        check_recorded(entry, tmp_path / "run")


def test_only_models_that_read_word_pieces_get_them():
    from mmtk.models import MODELS

    refs = parse_feature_refs(["tokens@text", "efficientnet-lite0"])
    with pytest.raises(UsageError, match="model 'gmu' cannot read word pieces.*tinybert"):
        check_token_model("gmu", MODELS.capabilities("gmu"), refs)
    with pytest.raises(UsageError, match="needs one tokens input, got none"):
        check_token_model("tinybert", MODELS.capabilities("tinybert"), parse_feature_refs(["efficientnet-lite0"]))
    check_token_model("tinybert", MODELS.capabilities("tinybert"), refs)
