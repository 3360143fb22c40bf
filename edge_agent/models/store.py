"""The loaded classifiers, by model name, and their hot-swap from the models directory.

Three parties, one rule each:
- the *loader thread* polls the models directory (`ModelWatcher`, stat polling every
  `models.poll_interval_s`), and loads a new bundle fully: signature (when a keyring is
  configured), hashes, labels vs outputs, golden examples, warm-up. Only a bundle that
  passed everything is offered for swapping; a failed one is reported once and not tried
  again until it changes on disk;
- the *worker thread* calls `apply_ready()` between batches: the swap is a dict assignment,
  so no message is labelled by a half-loaded model and a batch never sees two versions;
- everyone else calls `get(name)`; within a batch it returns the same classifier every time
  because only the worker thread changes `_loaded`.

The worker hands the old classifier to the loader thread, which drops it and asks glibc to
return the freed heap to the OS (`malloc_trim`): without that, each swap left the old
model's pages resident (RSS grew by a model per swap, measured with bench/swap_ota.py),
because the two models live in different malloc arenas (loaded on different threads).
Two models are in memory only between the end of a load and the next batch boundary.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edge_agent.bundle.layout import BundleError
from edge_agent.bundle.verify import Verifier
from edge_agent.bundle.versions import BundleRef
from edge_agent.engine.encoder import Encoder
from edge_agent.engine.prediction import ClassifyTiming, Prediction
from edge_agent.engine.runner import Precision
from edge_agent.labels.examples import LabelsError
from edge_agent.labels.labeller import build_labeller
from edge_agent.models.label_sets import LabelSets, LabelSetSource, Signature
from edge_agent.models.loading import Served, load_recorded, refusal_reason, same_kind
from edge_agent.models.refusals import RefusalLog
from edge_agent.models.watch import ModelWatcher
from edge_agent.telemetry.logs import get_logger

# The loader never polls faster than this, whatever the config says.
MIN_POLL_INTERVAL_S: Final = 0.05
STOP_TIMEOUT_S: Final = 10.0

log = get_logger(__name__)


def _heap_trimmer() -> Callable[[], None]:
    """glibc's malloc_trim(0), or a no-op on a libc without it (musl)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def trim_heap() -> None:
        trim(0)  # 1 when memory went back to the OS, 0 when there was none to return

    return trim_heap


@dataclass(frozen=True)
class Swapped:
    """A model the worker swapped in between two batches."""

    name: str
    version: str
    previous_version: str | None
    labels: tuple[str, ...]
    previous_labels: tuple[str, ...] | None
    path: Path
    load_s: float  # load + verify + warm-up, on the loader thread
    ready_at: float  # time.monotonic() when the loader finished

    @property
    def labels_changed(self) -> bool:
        return self.previous_labels is not None and self.labels != self.previous_labels


@dataclass(frozen=True)
class BundleRefused:
    """A bundle that failed a check; the model it was meant for keeps its current version."""

    name: str
    version: str
    path: Path
    reason: str
    serving_version: str | None


@dataclass(frozen=True)
class _Ready:
    path: Path
    model: Served
    load_s: float
    ready_at: float


class ModelStore:
    def __init__(
        self,
        watcher: ModelWatcher,
        classifiers: dict[str, Served],
        *,
        precision: Precision = "auto",
        threads: int | None = None,
        keyring: Verifier | None = None,
        refusals: RefusalLog | None = None,
        label_sets: LabelSets | None = None,
    ) -> None:
        self._watcher = watcher
        self._label_sets = label_sets or LabelSets(())
        self._refusals = refusals
        self._precision: Precision = precision
        self._threads = threads
        self._keyring = keyring
        self._lock = threading.Lock()
        self._loaded = dict(classifiers)
        self._ready: dict[str, _Ready] = {}
        self._retired: list[Served] = []
        # Bundles skipped at start-up for an older one; the service reports them once running.
        self.startup_rejections: tuple[BundleRefused, ...] = ()
        self._trim_heap = _heap_trimmer()
        self._poke = threading.Event()
        self._stopping = threading.Event()
        self._loader: threading.Thread | None = None

    @classmethod
    def load(
        cls,
        models_dir: Path,
        names: Iterable[str],
        *,
        precision: Precision = "auto",
        threads: int | None = None,
        keyring: Verifier | None = None,
        refusals: RefusalLog | None = None,
        label_sets: LabelSets | None = None,
    ) -> ModelStore:
        """Load each named model's active bundle at startup; raises BundleError naming the
        problem when a model has no bundle that passes every check. A broken newest
        version falls back to the next one (unless `current` pins it), like a swap would;
        with `refusals`, bundles refused in an earlier run (or that it died loading) are not
        tried again until they change on disk. Each of `label_sets` is then built with its
        encoder (LabelsError for an examples file that cannot be used)."""
        earlier = refusals.refused() if refusals is not None else {}
        watcher = ModelWatcher(models_dir, dict.fromkeys(names), failed=earlier)
        loaded: dict[str, Served] = {}
        reasons: dict[str, str] = {}
        failed: list[tuple[BundleRef, str]] = []
        while requests := watcher.poll():
            for request in requests:
                ref = request.bundle
                try:
                    loaded[ref.name] = load_recorded(
                        ref, refusals, precision=precision, threads=threads, keyring=keyring
                    )
                except Exception as error:  # onnxruntime raises its own types too: never fatal
                    why = refusal_reason(error)
                    watcher.mark_failed(ref, why)
                    reasons[ref.name] = why
                    failed.append((ref, why))
                else:
                    watcher.mark_loaded(ref)
        for (path, stamp), why in earlier.items():  # said again once, with what serves now
            if path.parent.name in loaded and path.is_dir():
                failed.append((BundleRef(path.parent.name, path.name, path, stamp), why))
        for name in dict.fromkeys(names):
            if name not in loaded:
                why = reasons.get(name) or f"{models_dir / name}: no version folder with a bundle"
                raise BundleError(why)
        sets = label_sets or LabelSets(())
        for source, signature in sets.changed():
            encoder = loaded[source.encoder]
            if not isinstance(encoder, Encoder):
                raise BundleError(
                    f"{source.path}: examples need an embedding model, and "
                    f"{source.encoder!r} is a {encoder.manifest.task} classifier"
                )
            loaded[source.key] = build_labeller(source.key, encoder, source.path)
            sets.seen(source, signature)
        store = cls(
            watcher,
            loaded,
            precision=precision,
            threads=threads,
            keyring=keyring,
            refusals=refusals,
            label_sets=sets,
        )
        store.startup_rejections = tuple(
            BundleRefused(ref.name, ref.version, ref.path, why, loaded[ref.name].manifest.version)
            for ref, why in failed
        )
        return store

    # ---- any thread ------------------------------------------------------------------

    def get(self, name: str) -> Served:
        with self._lock:
            return self._loaded[name]

    def classify(
        self,
        name: str,
        texts: Sequence[str],
        *,
        top_k: int,
        timing: ClassifyTiming | None = None,
    ) -> list[Prediction]:
        """The pipeline's `Classify`: one call, one classifier, so one version per call."""
        model = self.get(name)
        if isinstance(model, Encoder):  # startup refuses routes that would get here
            raise TypeError(f"{name} is an embedding model: a route needs examples to use it")
        return model.classify(texts, top_k=top_k, timing=timing)

    def versions(self) -> dict[str, str]:
        with self._lock:
            return {name: c.manifest.version for name, c in self._loaded.items()}

    def names(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._loaded)

    def poke(self) -> None:
        """Poll now instead of at the next interval (OTA just installed a bundle)."""
        self._poke.set()

    def swap_waiting(self) -> bool:
        """A loaded bundle waits for `apply_ready` (the worker lets batches in flight finish
        first, so that every batch is labelled by one version)."""
        with self._lock:
            return bool(self._ready)

    # ---- worker thread ---------------------------------------------------------------

    def apply_ready(self) -> list[Swapped]:
        """Swap in every bundle the loader finished; call only between batches."""
        with self._lock:
            if not self._ready:
                return []
            ready, self._ready = self._ready, {}
            swapped = []
            for name, item in ready.items():
                previous = self._loaded.get(name)
                self._loaded[name] = item.model
                if previous is not None:
                    self._retired.append(previous)  # freed on the loader thread, not here
                manifest = item.model.manifest
                swapped.append(
                    Swapped(
                        name=name,
                        version=manifest.version,
                        previous_version=previous.manifest.version if previous else None,
                        labels=tuple(manifest.labels),
                        previous_labels=tuple(previous.manifest.labels) if previous else None,
                        path=item.path,
                        load_s=item.load_s,
                        ready_at=item.ready_at,
                    )
                )
        self._poke.set()
        return swapped

    # ---- loader thread ---------------------------------------------------------------

    def start_watching(
        self, interval_s: float, on_rejected: Callable[[BundleRefused], None]
    ) -> None:
        self._loader = threading.Thread(
            target=self._watch,
            args=(max(MIN_POLL_INTERVAL_S, interval_s), on_rejected),
            name="edge-agent-models",
            daemon=True,
        )
        self._loader.start()

    def stop_watching(self) -> None:
        self._stopping.set()
        self._poke.set()
        if self._loader is not None:
            self._loader.join(STOP_TIMEOUT_S)

    def _release_retired(self) -> None:
        with self._lock:
            retired, self._retired = self._retired, []
        if retired:
            # The service freezes its start-up heap, these models' Python objects with it
            # (daemon/service.py): thawed so that the collector can free them even if they
            # are part of a reference cycle, then the survivors frozen again. One full
            # collection per swap, on this thread; nothing of the kind where no one froze.
            frozen = gc.get_freeze_count() > 0
            if frozen:
                gc.unfreeze()
            del retired  # the last references: onnxruntime frees the sessions here
            if frozen:
                gc.collect()
                gc.freeze()
            self._trim_heap()

    def _watch(self, interval_s: float, on_rejected: Callable[[BundleRefused], None]) -> None:
        while not self._stopping.is_set():
            self._release_retired()
            try:
                requests = self._watcher.poll()
            except OSError as error:
                # The models directory vanished or is unreadable: keep serving, keep looking.
                log.error("models_dir_unreadable", reason=str(error))
                requests = []
            for request in requests:
                if self._stopping.is_set():
                    return
                self._prepare(request.bundle, on_rejected)
            for source, signature in self._label_sets.changed():
                encoder = self.get(source.encoder)
                if isinstance(encoder, Encoder):
                    self._prepare_labels(source, signature, encoder, on_rejected)
            self._poke.wait(interval_s)
            self._poke.clear()

    def _prepare(self, ref: BundleRef, on_rejected: Callable[[BundleRefused], None]) -> None:
        started = time.monotonic()
        log.info("model_loading", model=ref.name, version=ref.version, path=str(ref.path))
        try:
            model = load_recorded(
                ref,
                self._refusals,
                precision=self._precision,
                threads=self._threads,
                keyring=self._keyring,
            )
            same_kind(ref, model, self.get(ref.name))
        except Exception as error:  # e.g. onnxruntime refusing a graph; never end the loader
            why = refusal_reason(error)
            self._watcher.mark_failed(ref, why)
            serving = self.versions().get(ref.name)
            on_rejected(BundleRefused(ref.name, ref.version, ref.path, why, serving))
            return
        ready_at = time.monotonic()
        self._watcher.mark_loaded(ref)
        with self._lock:
            self._ready[ref.name] = _Ready(ref.path, model, ready_at - started, ready_at)
        if isinstance(model, Encoder):  # its label sets move to it, each once rebuilt
            for source, signature in self._label_sets.using(ref.name):
                self._prepare_labels(source, signature, model, on_rejected)

    def _prepare_labels(
        self,
        source: LabelSetSource,
        signature: Signature,
        encoder: Encoder,
        on_rejected: Callable[[BundleRefused], None],
    ) -> None:
        """Build a label set's labeller with `encoder` and offer it for swapping; a file that
        cannot be used is reported once and the serving labeller stays."""
        started = time.monotonic()
        try:
            labeller = build_labeller(source.key, encoder, source.path)
        except Exception as error:  # LabelsError, or the encoder failing on an example
            why = str(error) if isinstance(error, LabelsError) else repr(error)
            serving = self.versions().get(source.key)
            on_rejected(BundleRefused(source.key, "", source.path, why, serving))
        else:
            ready_at = time.monotonic()
            with self._lock:
                self._ready[source.key] = _Ready(
                    source.path, labeller, ready_at - started, ready_at
                )
        self._label_sets.seen(source, signature)
