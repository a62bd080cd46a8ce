"""Weights and training-state files: what goes in comes back (tensors, metadata, optimiser state,
random generators, raw and averaged weights), and every misfit is one line naming the file.
Integrity (the content hash) is tested in test_integrity.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as save_safetensors_bytes

from helpers import error_of, seeded_conv_bn
from onestage.checkpoint import (
    METADATA_KEY,
    load_fitting,
    load_model_weights,
    load_training_state,
    load_weights,
    read_metadata,
    save_training_state,
    save_weights,
    weights_epoch,
)


class Counting(torch.optim.Optimizer):
    """SGD whose per-parameter state holds plain numbers (a step count, a scale) and, for
    parameters of more than one dimension, tensors: a velocity, its sign (bool) and one whose
    name has a dot in it, as an optimiser's state may."""

    def __init__(self, params) -> None:
        super().__init__(params, {"lr": 0.1})

    def step(self) -> None:
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                state["calls"] = state.get("calls", 0) + 1
                state["scale"] = 0.5
                velocity = param.grad * state["calls"]
                if param.dim() > 1:
                    state["velocity"] = velocity.clone()
                    state["velocity.sign"] = velocity > 0
                param.data.add_(velocity, alpha=-group["lr"])


def stepped(optimizer_class=torch.optim.AdamW, steps: int = 2) -> tuple[torch.nn.Module, object]:
    model = seeded_conv_bn()
    optimizer = optimizer_class(model.parameters())
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.rand(2, 3, 6, 6)).square().sum().backward()
        optimizer.step()
    return model, optimizer


def test_weights_and_metadata_round_trip_and_fit_a_model(tmp_path: Path) -> None:
    model = seeded_conv_bn()
    path = tmp_path / "w.safetensors"
    save_weights(path, model, {"model": "tiny", "num_classes": 2, "epoch": 4})
    tensors, metadata = load_weights(path)
    assert set(tensors) == set(model.state_dict())
    assert all(torch.equal(tensors[name], value) for name, value in model.state_dict().items())
    assert (metadata["model"], metadata["num_classes"], metadata["epoch"]) == ("tiny", 2, 4)
    assert read_metadata(path) == metadata
    assert json.loads(path.with_suffix(".json").read_text()) == metadata
    fresh = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    assert load_model_weights(fresh, path, {"model": "tiny", "num_classes": 2}) == metadata
    assert torch.equal(fresh[0].weight, model[0].weight)
    assert weights_epoch(path) == 4


def test_half_weights_load_into_a_float_model(tmp_path: Path) -> None:
    model = seeded_conv_bn()
    path = tmp_path / "w.safetensors"
    save_weights(path, model, {"model": "tiny"}, half=True)
    tensors, _ = load_weights(path)
    assert tensors["0.weight"].dtype == torch.float16
    assert tensors["1.num_batches_tracked"].dtype == torch.int64  # integers stay as they are
    fresh = seeded_conv_bn()
    torch.nn.init.zeros_(fresh[0].weight)
    load_fitting(fresh, tensors, path)
    assert fresh[0].weight.dtype == torch.float32
    torch.testing.assert_close(fresh[0].weight, model[0].weight.half().float())


def test_weights_for_another_model_or_class_count_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_weights(path, seeded_conv_bn(), {"model": "tiny", "num_classes": 2})
    assert error_of(lambda: load_model_weights(seeded_conv_bn(), path, {"model": "other"})) == (
        f"{path}: weights are for model 'tiny', not 'other'"
    )
    assert error_of(lambda: load_model_weights(seeded_conv_bn(), path, {"num_classes": 3})) == (
        f"{path}: weights are for num_classes 2, not 3"
    )
    load_model_weights(seeded_conv_bn(), path, {})  # nothing expected: nothing checked


def test_weights_that_do_not_fit_name_the_first_misfit(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_weights(path, seeded_conv_bn(), {"model": "tiny"})
    tensors, _ = load_weights(path)
    other_kernel = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    assert error_of(lambda: load_fitting(other_kernel, tensors, path)) == (
        f"{path}: weights do not fit this architecture (0 missing, 1 of another shape, 0 "
        "unknown, e.g. 0.weight)"
    )
    deeper = torch.nn.Sequential(seeded_conv_bn(), torch.nn.Conv2d(4, 4, 1))
    message = error_of(lambda: load_fitting(deeper, tensors, path))
    assert message == (
        f"{path}: weights do not fit this architecture (7 missing, 1 of another shape, 5 "
        "unknown, e.g. 0.0.bias)"
    )
    extra = {**tensors, "unused.weight": torch.zeros(1)}  # a tensor the model lacks
    assert error_of(lambda: load_fitting(seeded_conv_bn(), extra, path)) == (
        f"{path}: weights do not fit this architecture (0 missing, 0 of another shape, 1 "
        "unknown, e.g. unused.weight)"
    )


def test_the_epoch_of_weights_needs_the_file_and_its_sidecar_to_agree(tmp_path: Path) -> None:
    path = tmp_path / "last.safetensors"
    assert weights_epoch(path) is None
    save_weights(path, seeded_conv_bn(), {"model": "tiny", "epoch": 3})
    assert weights_epoch(path) == 3
    sidecar = path.with_suffix(".json")
    sidecar.write_text(json.dumps({"epoch": 2}))
    assert weights_epoch(path) is None
    sidecar.write_text("[3]")
    assert weights_epoch(path) is None
    sidecar.write_text("{not json")
    assert weights_epoch(path) is None
    sidecar.unlink()
    assert weights_epoch(path) is None


def test_a_training_state_restores_the_optimiser_generators_and_weights(tmp_path: Path) -> None:
    model, optimizer = stepped(Counting)
    raw = {name: value + 1 for name, value in model.state_dict().items()}
    averaged = model.state_dict()
    path = tmp_path / "last.state.safetensors"
    torch.manual_seed(7)
    expected_draw = torch.rand(3)
    torch.manual_seed(7)
    save_training_state(path, optimizer, {"epoch": 2, "step": 20}, raw, None, averaged)
    torch.manual_seed(99)
    twin = Counting(seeded_conv_bn().parameters())
    counters, raw_back, averaged_back = load_training_state(path, twin)
    assert counters == {"epoch": 2, "step": 20}
    assert torch.equal(torch.rand(3), expected_draw)  # the CPU generator was put back
    assert set(raw_back) == set(raw) == set(averaged_back)
    assert all(torch.equal(raw_back[name], raw[name]) for name in raw)
    assert all(torch.equal(averaged_back[name], averaged[name]) for name in averaged)
    pairs = zip(optimizer.param_groups[0]["params"], twin.param_groups[0]["params"], strict=True)
    for mine, theirs in pairs:
        state, restored = optimizer.state[mine], twin.state[theirs]
        assert restored["calls"] == state["calls"] == 2 and restored["scale"] == 0.5
        assert restored.keys() == state.keys()  # numbers alone for 1-d parameters
        for name in ("velocity", "velocity.sign"):
            if name in state:
                assert torch.equal(restored[name], state[name])
    assert twin.param_groups[0]["lr"] == 0.1
    assert read_metadata(path)["format_version"] == 2


def test_a_state_without_weights_gives_none_back(tmp_path: Path) -> None:
    _, optimizer = stepped()
    path = tmp_path / "old.state.safetensors"
    save_training_state(path, optimizer, {"epoch": 1})
    assert load_training_state(path, stepped()[1])[1:] == ({}, {})


def test_the_cuda_generator_is_saved_and_restored_for_a_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GPU's generator state goes in the file and back to the same device (the CUDA calls
    are stood in for: this machine has no GPU)."""
    gpu = torch.device("cuda", 0)
    generator_state = torch.arange(16, dtype=torch.uint8)
    restored: list[tuple[torch.Tensor, torch.device]] = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: generator_state + device.index)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda t, device: restored.append((t, device)))
    _, optimizer = stepped()
    path = tmp_path / "gpu.state.safetensors"
    save_training_state(path, optimizer, {"epoch": 1}, device=gpu)
    load_training_state(path, stepped()[1], torch.device("cpu"))
    assert restored == []  # restored on a GPU only
    load_training_state(path, stepped()[1], gpu)
    ((tensor, device),) = restored
    assert torch.equal(tensor, generator_state) and device == gpu
    save_training_state(path, optimizer, {"epoch": 1}, device=torch.device("cpu"))
    restored.clear()
    load_training_state(path, stepped()[1], gpu)
    assert restored == []  # a file from a CPU run has none to restore


def test_every_state_tensor_takes_the_layout_of_its_parameter(tmp_path: Path) -> None:
    model, optimizer = stepped(Counting)
    path = tmp_path / "state.safetensors"
    save_training_state(path, optimizer, {"epoch": 1})
    twin = seeded_conv_bn().to(memory_format=torch.channels_last)
    twin_optimizer = Counting(twin.parameters())
    load_training_state(path, twin_optimizer)
    weight = twin[0].weight
    sign = twin_optimizer.state[weight]["velocity.sign"]  # torch casts it to the weight's dtype
    assert sign.dtype == weight.dtype and sign.stride() == weight.stride()
    assert torch.equal(sign, optimizer.state[model[0].weight]["velocity.sign"].to(sign.dtype))


def test_a_parameter_without_state_is_left_without(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    optimizer = torch.optim.AdamW(model.parameters())
    model[0](torch.rand(1, 2)).sum().backward()  # the second layer gets no gradient, no state
    optimizer.step()
    path = tmp_path / "state.safetensors"
    save_training_state(path, optimizer, {"epoch": 1})
    twin = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    twin_optimizer = torch.optim.AdamW(twin.parameters())
    load_training_state(path, twin_optimizer)
    assert len(twin_optimizer.state) == 2 and twin[1].weight not in twin_optimizer.state


def test_moments_take_the_layout_of_channels_last_parameters(tmp_path: Path) -> None:
    """The fused optimiser assumes a parameter and its moments share strides: state saved
    contiguous is given back in each parameter's own layout."""
    model, optimizer = stepped()
    path = tmp_path / "state.safetensors"
    save_training_state(path, optimizer, {"epoch": 1})
    twin = seeded_conv_bn().to(memory_format=torch.channels_last)
    twin_optimizer = torch.optim.AdamW(twin.parameters())
    load_training_state(path, twin_optimizer)
    weight = twin[0].weight
    assert weight.stride() != weight.contiguous().stride()  # the test is worth something
    state = twin_optimizer.state[weight]
    assert state["exp_avg"].stride() == weight.stride()
    assert state["exp_avg_sq"].stride() == weight.stride()
    assert torch.equal(state["exp_avg"], optimizer.state[model[0].weight]["exp_avg"])
    assert state["step"].shape == ()  # not a parameter-shaped tensor: left as it is
    bias = twin[0].bias
    assert torch.equal(
        twin_optimizer.state[bias]["exp_avg"], optimizer.state[model[0].bias]["exp_avg"]
    )


def rewritten(path: Path, change) -> Path:
    """`path` with its onestage document changed by `change`, hash dropped (so the document's
    layout checks are what answers)."""
    from safetensors.torch import load_file

    document = read_metadata(path)
    document.pop("content_sha256")
    out = path.with_name(f"changed_{path.name}")
    tensors = load_file(str(path))
    tensors, document = change(tensors, document)
    out.write_bytes(save_safetensors_bytes(tensors, metadata={METADATA_KEY: json.dumps(document)}))
    return out


@pytest.mark.parametrize(
    "change",
    [
        lambda t, d: (t, {**d, "scalars": []}),
        lambda t, d: (t, {**d, "scalars": {"x": {}}}),
        lambda t, d: (t, {**d, "scalars": {"0": 5}}),
        lambda t, d: (t, {**d, "scalars": {"1" * 10: {}}}),
        lambda t, d: (t, {**d, "counters": []}),
        lambda t, d: (t, {**d, "param_groups": {}}),
        lambda t, d: (t, {**d, "param_groups": [3]}),
        lambda t, d: ({k: v for k, v in t.items() if k != "rng.torch"}, d),
        lambda t, d: ({**t, "optimizer.x.exp_avg": torch.zeros(1)}, d),
        lambda t, d: ({**t, "optimizer.0": torch.zeros(1)}, d),
    ],
    ids=[
        "scalars-list",
        "scalar-key",
        "scalar-value",
        "long-index",
        "counters",
        "groups",
        "group",
        "no-rng",
        "state-key",
        "short-key",
    ],
)
def test_a_state_of_another_layout_is_one_line(tmp_path: Path, change) -> None:
    _, optimizer = stepped()
    path = tmp_path / "s.safetensors"
    save_training_state(path, optimizer, {"epoch": 1})
    changed = rewritten(path, change)
    assert error_of(lambda: load_training_state(changed, stepped()[1])) == (
        f"{changed}: not a training-state file as onestage writes them"
    )


def test_a_state_for_another_optimiser_is_one_line(tmp_path: Path) -> None:
    _, optimizer = stepped()
    path = tmp_path / "s.safetensors"
    save_training_state(path, optimizer, {"epoch": 1})
    smaller = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters())
    message = error_of(lambda: load_training_state(path, smaller))
    assert message.startswith(
        f"{path}: the training state does not fit this optimiser (ValueError: loaded state dict"
    )
    # a 9-digit parameter index is still an index (torch ignores state of no parameter)
    nine = rewritten(path, lambda t, d: (t, {**d, "scalars": {"1" * 9: {"x": 1}}}))
    assert load_training_state(nine, stepped()[1])[0] == {"epoch": 1}


def test_damaged_states_and_weights_name_their_file(tmp_path: Path) -> None:
    _, optimizer = stepped()
    path = tmp_path / "s.safetensors"
    save_training_state(path, optimizer, {"epoch": 1})
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    assert error_of(lambda: load_training_state(path, stepped()[1])) == (
        f"{path}: its tensors or metadata do not match its content hash (the file is corrupt, "
        "or was edited after it was written)"
    )
    odd = tmp_path / "odd.safetensors"
    odd.write_bytes(save_safetensors_bytes({"rng.torch": torch.zeros(2)}, {METADATA_KEY: "{"}))
    assert error_of(lambda: load_training_state(odd, stepped()[1])).startswith(
        f"{odd}: onestage metadata is not valid JSON ("
    )
    weights = tmp_path / "w.safetensors"
    save_weights(weights, seeded_conv_bn(), {"model": "tiny"})
    other_kernel = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    assert error_of(lambda: load_model_weights(other_kernel, weights, {})).startswith(
        f"{weights}: weights do not fit this architecture ("
    )
    hashless = tmp_path / "h.safetensors"
    document = {"model": "tiny", "content_sha256": 5}
    hashless.write_bytes(
        save_safetensors_bytes({"a": torch.zeros(1)}, {METADATA_KEY: json.dumps(document)})
    )
    assert error_of(lambda: load_weights(hashless)) == (
        f"{hashless}: its content hash is not a string (the file is corrupt)"
    )


def test_weights_resaved_from_an_older_file_are_of_the_current_format(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_weights(
        path, seeded_conv_bn(), {"model": "tiny", "format_version": 1, "content_sha256": "x" * 64}
    )
    _, metadata = load_weights(path)  # the hash covers the document again: it loads
    assert metadata["format_version"] == 2 and metadata["content_sha256"] != "x" * 64
    assert path.with_suffix(".json").read_text() == json.dumps(metadata, indent=2) + "\n"


def test_files_without_onestage_metadata_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "foreign.safetensors"
    path.write_bytes(save_safetensors_bytes({"a": torch.zeros(2)}, metadata={"other": "x"}))
    assert error_of(lambda: load_weights(path)) == (
        f"{path}: not a onestage weights file (no onestage metadata)"
    )
    assert error_of(lambda: read_metadata(path)) == (
        f"{path}: not a onestage weights file (no onestage metadata)"
    )
    assert error_of(lambda: load_training_state(path, stepped()[1])) == (
        f"{path}: not a onestage training-state file"
    )
    bare = tmp_path / "bare.safetensors"
    bare.write_bytes(save_safetensors_bytes({"a": torch.zeros(2)}))
    assert error_of(lambda: load_weights(bare)) == (
        f"{bare}: not a onestage weights file (no onestage metadata)"
    )
    for document, problem in (("[1]", "is not a JSON object"), ("{", "is not valid JSON")):
        odd = tmp_path / "odd.safetensors"
        odd.write_bytes(save_safetensors_bytes({"a": torch.zeros(2)}, {METADATA_KEY: document}))
        assert error_of(lambda odd=odd: load_weights(odd)).startswith(
            f"{odd}: onestage metadata {problem}"
        )
        assert error_of(lambda odd=odd: read_metadata(odd)).startswith(
            f"{odd}: onestage metadata {problem}"
        )


def test_missing_and_unreadable_files_are_one_line(tmp_path: Path) -> None:
    gone = tmp_path / "gone.safetensors"
    assert error_of(lambda: load_weights(gone)) == f"{gone}: weights file not found"
    assert error_of(lambda: read_metadata(gone)).startswith(
        f"{gone}: not a readable safetensors file ("
    )
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    assert error_of(lambda: load_weights(junk)).startswith(
        f"{junk}: not a readable safetensors file (truncated or corrupt?): "
    )
