"""What every fuzz test shares: the case count, the per-case limits, the report, the mutators.

Each reader gets `CASES` cases per test (ONESTAGE_FUZZ_CASES; `make fuzz` sets 2000). A case
passes when the reader returns, or raises an `OnestageError` whose message is one line naming
the file, within `MAX_SECONDS` of wall time and `MAX_MB` of memory. Memory is the growth of the
process's resident set over the case: a thread samples /proc/self/statm every `POLL_SECONDS`,
and a rise of the kernel's high-water mark (ru_maxrss) during the case counts too, so a spike
shorter than the poll is missed only when it stays below the process's earlier peak.

With ONESTAGE_FUZZ_REPORT=PATH, every test appends a JSON line {"reader", "test", "cases",
"failures", "max_seconds", "max_mb"} to PATH (`summary.py` tabulates them).
"""

from __future__ import annotations

import json
import os
import random
import resource
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from PIL import Image

from helpers import TINY_ANCHOR_FREE_SPEC
from onestage.data.check import check_dataset
from onestage.data.formats import read_dataset, write_dataset
from onestage.data.records import DetectionDataset, ImageRecord
from onestage.errors import OnestageError

CASES = int(os.environ.get("ONESTAGE_FUZZ_CASES", "80"))
MAX_SECONDS = 1.0
MAX_MB = 500.0
POLL_SECONDS = 0.002
_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20
CLASSES = ("cat", "dog")

# Values that break parsers and arithmetic: limits, non-finite numbers, wrong types, odd text.
SPECIAL_TOKENS = (
    "nan", "NaN", "inf", "-inf", ".inf", "Infinity", "1e308", "-1e308", "1e999", "1e-320", "0",
    "-0", "-1", "2147483648", "18446744073709551617", "9" * 5000, "0x7fffffff", "0b1", "1_000",
    "", " ", "null", "~", "true", "no", "[]", "{}", "[[]]", '""', "'", '"', "\\", "&a", "*a",
    "!!binary AAAA", "!!python/object:os.system", "%", "?", ":", "- -", "\t", "\x00", "\x1b[2J",
    "\r", "\u2028", "\ufeff", "\u202e", "ÿ", "é", "名前", "\U0001f98a", "\ud800", "<", "&amp;",
    "]]>", "<!--", "../../", "\\\\?\\", "a" * 300,
)  # fmt: skip


def special_value(rng: random.Random) -> Any:
    """A JSON/YAML value of a random awkward kind: a huge or non-finite number, a wrong type,
    odd text, an empty or a nested container."""
    choices: list[Any] = [
        None, True, False, 0, -1, 1.5, 2**63, -(2**64), 10**400, float("nan"), float("inf"),
        -float("inf"), 1e308, "", "x", rng.choice(SPECIAL_TOKENS), [], {}, [None], {"": None},
        [[[[1]]]], "9" * 5000, list(range(50)), {str(i): i for i in range(20)},
    ]  # fmt: skip
    return rng.choice(choices)


def mutate_tree(value: Any, rng: random.Random, depth: int = 0) -> Any:
    """`value` (parsed JSON/YAML) with one random change at a random place: a value replaced,
    a key removed, renamed or added, an item duplicated, removed or wrapped in a list."""
    if isinstance(value, dict) and value and rng.random() < 0.75 and depth < 12:
        key = rng.choice(list(value))
        result = dict(value)
        action = rng.random()
        if action < 0.55:
            result[key] = mutate_tree(value[key], rng, depth + 1)
        elif action < 0.7:
            del result[key]
        elif action < 0.8:
            result[f"{key}{rng.choice(SPECIAL_TOKENS)}"] = result.pop(key)
        elif action < 0.9:
            result[rng.choice([key.upper() if isinstance(key, str) else key, "extra", "", 7])] = (
                special_value(rng)
            )
        else:
            result[key] = [value[key]]
        return result
    if isinstance(value, list) and value and rng.random() < 0.75 and depth < 12:
        result = list(value)
        index = rng.randrange(len(result))
        action = rng.random()
        if action < 0.6:
            result[index] = mutate_tree(result[index], rng, depth + 1)
        elif action < 0.75:
            del result[index]
        elif action < 0.9:
            result.insert(index, result[index])
        else:
            rng.shuffle(result)
        return result
    return special_value(rng)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """`data` with 1-4 random byte-level changes: bit flips, random or special bytes, cuts,
    insertions, duplicated spans, truncation, emptiness."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        action = rng.randrange(8)
        at = rng.randrange(len(out) + 1)
        if action == 0 and out:
            out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif action == 1 and out:
            out[min(at, len(out) - 1)] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        elif action == 2:
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        elif action == 3:
            del out[at : at + rng.randint(1, 64)]
        elif action == 4:
            out[at:at] = out[at : at + rng.randint(1, 256)]
        elif action == 5:
            del out[at:]
        elif action == 6:
            out[at:at] = rng.choice(SPECIAL_TOKENS).encode("utf-8", "surrogatepass")
        elif rng.random() < 0.1:
            out.clear()
    return bytes(out)


def mutate_text(text: str, rng: random.Random) -> str:
    """`text` with 1-3 line- or token-level changes: lines duplicated, removed, swapped or
    emptied; a token replaced by a special one; deep nesting; CRLF or tab indentation."""
    lines = text.splitlines(keepends=True) or [""]
    for _ in range(rng.randint(1, 3)):
        index = rng.randrange(len(lines))
        action = rng.randrange(8)
        if action == 0:
            lines.insert(index, lines[index])
        elif action == 1 and len(lines) > 1:
            del lines[index]
        elif action == 2:
            other = rng.randrange(len(lines))
            lines[index], lines[other] = lines[other], lines[index]
        elif action in (3, 4):
            tokens = lines[index].split(" ")
            tokens[rng.randrange(len(tokens))] = rng.choice(SPECIAL_TOKENS)
            lines[index] = " ".join(tokens)
        elif action == 5:
            depth = rng.choice((50, 1000, 20_000))
            opener, closer = rng.choice((("[", "]"), ("{", "}"), ("<a>", "</a>"), ("- ", "")))
            lines.insert(index, opener * depth + closer * depth * rng.randint(0, 1) + "\n")
        elif action == 6:
            lines[index] = lines[index].replace("\n", "\r\n").replace("  ", "\t")
        else:
            lines[index] = ""
    return "".join(lines)


def mutate_file_bytes(data: bytes, rng: random.Random) -> bytes:
    """Text-level changes half the time (for text formats), byte-level ones otherwise."""
    if rng.random() < 0.5:
        try:
            return mutate_text(data.decode("utf-8"), rng).encode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            pass
    return mutate_bytes(data, rng)


@dataclass
class CaseResult:
    """How one case went: its wall time, its memory growth and what escaped (if anything)."""

    seconds: float
    megabytes: float
    error: BaseException | None


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE_MB


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(function: Callable[[], Any]) -> CaseResult:
    """Run `function` once, timing it and sampling the process's resident memory meanwhile."""
    start_rss, start_max = _rss_mb(), _max_rss_mb()
    peak = [start_rss]
    done = threading.Event()

    def poll() -> None:
        while not done.wait(POLL_SECONDS):
            peak[0] = max(peak[0], _rss_mb())

    sampler = threading.Thread(target=poll, daemon=True)
    sampler.start()
    began = time.perf_counter()
    error: BaseException | None = None
    try:
        function()
    except Exception as caught:  # judged by the caller: only OnestageError may escape
        error = caught
    seconds = time.perf_counter() - began
    done.set()
    sampler.join()
    end_max = _max_rss_mb()
    peak_mb = max(peak[0], _rss_mb(), end_max if end_max > start_max else 0.0)
    return CaseResult(seconds, max(0.0, peak_mb - start_rss), error)


@dataclass
class FuzzRun:
    """The cases of one test of one reader: counts, worst time and memory, failures."""

    reader: str
    test: str
    cases: int = 0
    max_seconds: float = 0.0
    max_mb: float = 0.0
    failures: list[str] = field(default_factory=list)

    def case(self, description: str, function: Callable[[], Any], names: str | Path) -> str | None:
        """Run one case; the failure (None when it passes) is recorded and returned.

        `names` is what an error must mention: the file read, or the folder it lies in.
        """
        result = measure(function)
        self.cases += 1
        self.max_seconds = max(self.max_seconds, result.seconds)
        self.max_mb = max(self.max_mb, result.megabytes)
        failure = _judge(result, str(names))
        if failure is not None:
            self.failures.append(f"{description}: {failure}")
        return failure

    def report(self) -> None:
        """Append the report line to ONESTAGE_FUZZ_REPORT, when set."""
        report = os.environ.get("ONESTAGE_FUZZ_REPORT")
        if report:
            line = {
                "reader": self.reader,
                "test": self.test,
                "cases": self.cases,
                "failures": len(self.failures),
                "max_seconds": round(self.max_seconds, 4),
                "max_mb": round(self.max_mb, 1),
            }
            with open(report, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(line) + "\n")

    def finish(self) -> None:
        """Report, then fail listing the failed cases (the first ten)."""
        self.report()
        shown = "\n".join(self.failures[:10])
        assert not self.failures, f"{len(self.failures)}/{self.cases} cases failed:\n{shown}"


def _judge(result: CaseResult, names: str) -> str | None:
    """Why the case broke a rule, or None."""
    error = result.error
    if error is not None and not isinstance(error, OnestageError):
        trace = "".join(traceback.format_exception(error, limit=-3)).strip()
        return f"{type(error).__name__} escaped: {error!s:.300}\n{trace}"
    if error is not None and ("\n" in str(error) or "\r" in str(error)):
        return f"multi-line message: {str(error)!r:.500}"
    if error is not None and names not in str(error):
        return f"message does not name {names}: {str(error)!r:.300}"
    if result.seconds > MAX_SECONDS:
        return f"took {result.seconds:.2f} s (limit {MAX_SECONDS} s)"
    if result.megabytes > MAX_MB:
        return f"used {result.megabytes:.0f} MB (limit {MAX_MB:.0f} MB)"
    return None


def seeded(reader: str, index: int) -> random.Random:
    """The random stream of case `index` of `reader`: the same on every run, so a failure
    quoted as `reader case N` reproduces."""
    return random.Random(f"{reader}:{index}")


@contextmanager
def replaced(path: Path, data: bytes | None) -> Iterator[None]:
    """`path` holding `data` (None: removed) for the duration, then put back as it was."""
    original = path.read_bytes() if path.is_file() else None
    if data is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(data)
    try:
        yield
    finally:
        if original is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(original)


def write_valid_dataset(folder: Path, fmt: str, images: int = 2) -> Path:
    """A small valid dataset in `fmt` under `folder`: 32x24 PNGs with three boxes each."""
    rng = random.Random(fmt)
    records = []
    for index in range(images):
        path = folder / "src" / f"img{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 24), (rng.randrange(256), 90, 30)).save(path)
        boxes = [[1 + i, 2 + i, 12 + 3 * i, 20 - i] for i in range(3)]
        records.append(ImageRecord(path, 32, 24, boxes, [0, 1, index % 2], CLASSES))
    root = folder / fmt
    write_dataset(DetectionDataset(CLASSES, {"train": records[:1], "val": records[1:]}), root, fmt)
    return root


def read_mode(root: Path, index: int) -> Callable[[], Any]:
    """One of the ways the tools read a dataset, chosen by the case number: as training does,
    skipping invalid images, strictly with every image decoded, and as `onestage data check`."""
    modes: list[Callable[[], Any]] = [
        lambda: read_dataset(root),
        lambda: read_dataset(root, skip_invalid=True),
        lambda: read_dataset(root, strict=True, verify_images=True),
        lambda: check_dataset(root),
    ]
    return modes[index % len(modes)]


def property_cases(run: FuzzRun, test: Callable[[], None]) -> None:
    """Run a hypothesis test (whose examples call `run.case` and assert it passed), then report
    and check the run: the report line is written even when an example fails."""
    try:
        test()
    except BaseException:
        run.report()
        raise
    run.finish()


def tiny_weights(folder: Path) -> Path:
    """A weights file of the TINY_ANCHOR_FREE_SPEC detector (with its spec, as training writes
    them)."""
    from onestage.checkpoint import save_weights
    from onestage.models.spec import parse_spec
    from onestage.models.spec_model import build_spec_model

    model = build_spec_model(parse_spec(TINY_ANCHOR_FREE_SPEC), num_classes=len(CLASSES)).eval()
    metadata = {
        "model": "fuzz-tiny",
        "spec": model.spec.to_dict(),
        "class_names": list(CLASSES),
        "anchors": "seed",
        "input_size": 32,
        "loss": "quality",
    }
    path = folder / "tiny.safetensors"
    save_weights(path, model, metadata)
    return path


def with_document(data: bytes, document: object) -> bytes:
    """The safetensors file `data` with onestage's JSON document replaced by `document` (a
    string is written as it is). A mapping whose content hash is still a string gets it
    recomputed, as anyone editing a file can, so that the checks behind the hash see the edit."""
    from safetensors.torch import load as load_safetensors_bytes
    from safetensors.torch import save as save_safetensors_bytes

    from onestage.checkpoint import HASH_KEY, METADATA_KEY, content_hash

    tensors = load_safetensors_bytes(data)
    if isinstance(document, dict) and isinstance(document.get(HASH_KEY), str):
        as_read = json.loads(json.dumps(document))  # the document as the reader sees it
        document = {**as_read, HASH_KEY: content_hash(tensors, as_read)}
    text = document if isinstance(document, str) else json.dumps(document)
    return save_safetensors_bytes(tensors, metadata={METADATA_KEY: text})


def document_values(
    numbers: st.SearchStrategy[Any] | None = None,
    keys: st.SearchStrategy[Any] | None = None,
    text: int = 10,
    width: int = 4,
    leaves: int = 10,
) -> st.SearchStrategy[Any]:
    """JSON- or YAML-like values: None, booleans, `numbers` (default: any integer or float),
    strings of up to `text` characters, and lists and mappings (keys from `keys`, default
    strings of up to 10 characters) of up to `width` items, `leaves` scalars in all."""
    numbers = numbers if numbers is not None else st.integers() | st.floats()
    keys = keys if keys is not None else st.text(max_size=10)
    return st.recursive(
        st.none() | st.booleans() | numbers | st.text(max_size=text),
        lambda children: (
            st.lists(children, max_size=width) | st.dictionaries(keys, children, max_size=width)
        ),
        max_leaves=leaves,
    )
