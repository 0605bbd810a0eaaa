"""Trainable towers: pooling by family, the BiLSTM-attention head, freezing, lower-casing
of shouted text, image loaders, and which backbones can be fine-tuned."""

from __future__ import annotations

import pytest
import torch

from mmtk.backbones import resolve_backbone
from mmtk.errors import UsageError
from mmtk.finetune.towers import configure, pool_states, pooling_for, unshout
from tiny_models import save_tiny_bert, save_tiny_clip, save_tiny_gpt2, write_image


def test_pooling_follows_the_model_family():
    assert pooling_for("bert") == "cls" and pooling_for("roberta") == "cls"
    assert pooling_for("gpt2") == "last" and pooling_for("xlnet") == "last"
    assert pooling_for("t5") == "max"


def test_pool_states_reads_the_last_valid_token_and_ignores_padding_in_max():
    states = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert torch.equal(pool_states(states, mask, "last"), torch.stack([states[0, 1], states[1, 2]]))
    assert torch.equal(pool_states(states, mask, "cls"), states[:, 0])
    assert torch.equal(pool_states(states, mask, "max"), torch.stack([states[0, 1], states[1, 2]]))
    assert torch.equal(pool_states(states, mask, "mean"), torch.stack([states[0, :2].mean(0), states[1].mean(0)]))


def test_unshout_lowercases_only_mostly_upper_case_text():
    assert unshout("WHEN THE WIFI DIES") == "when the wifi dies"
    assert unshout("Meet NASA at 5") == "Meet NASA at 5"
    assert unshout("OK") == "OK"  # too few letters to call it shouting


def test_text_tower_is_trainable_and_freezes_embeddings_and_first_layers(tmp_path):
    tower = resolve_backbone(f"hf:{save_tiny_bert(tmp_path / 'bert', layers=2)}", "text").build_trainable("cpu")
    assert tower.training and all(isinstance(p, torch.nn.Parameter) for p in tower.parameters())
    configure(tower, freeze_layers=1)
    model = tower.model
    assert not any(p.requires_grad for p in model.embeddings.parameters())
    assert not any(p.requires_grad for p in model.encoder.layer[0].parameters())
    assert all(p.requires_grad for p in model.encoder.layer[1].parameters())
    with pytest.raises(UsageError, match="has 2 layers"):
        tower.freeze(3)


def test_gpt2_tower_pools_the_last_valid_token(tmp_path):
    tower = resolve_backbone(f"hf:{save_tiny_gpt2(tmp_path / 'gpt2')}", "text").build_trainable("cpu").eval()
    assert tower.pooling == "last"
    ids, lengths = tower.tokenize(["the cat is happy", "sun"])
    ids, mask = torch.as_tensor(ids), torch.arange(ids.shape[1])[None, :] < torch.as_tensor(lengths)[:, None]
    with torch.no_grad():
        pooled = tower(ids, mask)
        alone = tower(ids[1:, : int(lengths[1])])  # the short text without padding
    assert torch.allclose(pooled[1], alone[0], atol=1e-5)


def test_text_pool_overrides_the_family_and_survives_a_rebuild(tmp_path):
    from mmtk.finetune.towers import rebuild_tower

    tower = resolve_backbone(f"hf:{save_tiny_bert(tmp_path / 'bert')}", "text").build_trainable("cpu")
    assert tower.pooling == "cls"
    tower.with_options(pooling="mean")
    tower.save_files(tmp_path / "files")
    rebuilt = rebuild_tower(tmp_path / "files", tower.record())
    assert (tower.record()["pooling"], rebuilt.pooling) == ("mean", "mean")
    with pytest.raises(UsageError, match="unknown text_pool"):
        tower.with_options(pooling="first")


def test_bilstm_attention_head_sets_the_width_and_ignores_padding(tmp_path):
    tower = resolve_backbone(f"hf:{save_tiny_bert(tmp_path / 'bert')}", "text").build_trainable("cpu")
    tower.with_options(head="bilstm-attention").eval()
    ids, lengths = tower.tokenize(["the cat is happy and funny", "sun"])
    ids, mask = torch.as_tensor(ids), torch.arange(ids.shape[1])[None, :] < torch.as_tensor(lengths)[:, None]
    with torch.no_grad():
        out = tower(ids, mask)
        alone = tower(ids[1:, : int(lengths[1])])
    assert out.shape == (2, tower.dim) and tower.dim == 32
    assert torch.allclose(out[1], alone[0], atol=1e-5)


def test_lowercase_shouting_is_applied_before_tokenising(tmp_path):
    tower = resolve_backbone(f"hf:{save_tiny_bert(tmp_path / 'bert')}", "text").build_trainable("cpu")
    seen = []

    def tokenizer(texts, **options):
        seen.extend(texts)
        return {"input_ids": [[2, 3]] * len(texts)}

    tower.tokenizer = tokenizer
    tower.tokenize(["THE CAT IS FUNNY"])
    tower.with_options(lowercase_shouting=True).tokenize(["THE CAT IS FUNNY", "The Cat"])
    assert seen == ["THE CAT IS FUNNY", "the cat is funny", "The Cat"]


def test_image_loaders_augment_for_training_and_are_deterministic_for_evaluation(tmp_path):
    tower = resolve_backbone(f"clip:local-dir:{save_tiny_clip(tmp_path / 'clip')}", "image").build_trainable("cpu")
    image = str(write_image(tmp_path / "a.png", seed=1, size=(96, 80)))
    evaluate, train = tower.loader(train=False), tower.loader(train=True)
    assert torch.equal(evaluate(image), evaluate(image)) and evaluate(image).shape == (3, 32, 32)
    torch.manual_seed(0)
    assert not torch.equal(train(image), train(image))
    assert tower(evaluate(image)[None]).shape == (1, tower.dim)


def test_only_pooled_text_and_image_backbones_can_be_fine_tuned():
    with pytest.raises(UsageError, match="cannot be fine-tuned"):
        resolve_backbone("mfcc").build_trainable("cpu")
    with pytest.raises(UsageError, match="cannot be fine-tuned"):
        resolve_backbone("minilm", "text", sequence=True).build_trainable("cpu")


def test_minilm_is_mean_pooled_like_its_stored_features():
    """The packaged MiniLM is a BERT by family but a sentence-transformers model by
    training: its tower's ``auto`` pooling is the masked mean its frozen features use,
    so fine-tuning starts from the same sentence vectors."""
    tower = resolve_backbone("minilm", "text").build_trainable("cpu").eval()
    assert tower.model_type == "bert" and tower.with_options(pooling="auto").pooling == "mean"
    encoder = resolve_backbone("minilm", "text").build("cpu")
    frozen = encoder.encode(encoder.collate([encoder.load("a cat on a mat")]))[0]
    ids = tower.tokenizer(["a cat on a mat"], return_tensors="pt")
    with torch.no_grad():
        tuned = tower(ids["input_ids"], ids["attention_mask"].bool())[0]
    # The frozen vector is the mean, L2-normalised.
    assert torch.allclose(torch.nn.functional.normalize(tuned, dim=0), torch.as_tensor(frozen), atol=1e-5)
    assert tower.with_options(pooling="cls").pooling == "cls"
