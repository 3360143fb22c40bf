"""Loading one bundle for the store: the right engine for its task, the checks every load
shares, and the on-disk record that keeps a refused or crashing bundle from repeating after a
restart."""

from __future__ import annotations

from edge_agent.bundle.layout import BundleError
from edge_agent.bundle.manifest import load_manifest
from edge_agent.bundle.verify import Verifier
from edge_agent.bundle.versions import BundleRef
from edge_agent.engine.classifier import Classifier, load_classifier
from edge_agent.engine.encoder import Encoder, load_encoder
from edge_agent.engine.runner import Precision
from edge_agent.labels.labeller import ExampleLabeller
from edge_agent.models.refusals import RefusalLog

# What the store serves under a name: a bundle's classifier or encoder, or a label set
# answered through an encoder (keyed as in models/label_sets.py).
Served = Classifier | Encoder | ExampleLabeller


def refusal_reason(error: Exception) -> str:
    """A BundleError already names the file and the problem; anything else (onnxruntime's
    own errors) is shown with its type."""
    return str(error) if isinstance(error, BundleError) else repr(error)


def load_recorded(
    ref: BundleRef,
    refusals: RefusalLog | None,
    *,
    precision: Precision,
    threads: int | None,
    keyring: Verifier | None,
) -> Classifier | Encoder:
    """`load_bundle`, written down on disk before it starts and crossed out (or recorded as
    refused) when it ends, so that neither a refusal nor a crash repeats after a restart."""
    if refusals is None:
        return load_bundle(ref, precision=precision, threads=threads, keyring=keyring)
    refusals.loading(ref)
    try:
        classifier = load_bundle(ref, precision=precision, threads=threads, keyring=keyring)
    except Exception as error:
        refusals.refuse(ref, refusal_reason(error))
        raise
    refusals.loaded(ref)
    return classifier


def same_kind(ref: BundleRef, new: Served, serving: Served) -> None:
    """A swap keeps a model's kind: routes were checked against it at startup."""
    if isinstance(new, Encoder) != isinstance(serving, Encoder):
        raise BundleError(
            f"{ref.path}: a {new.manifest.task} bundle cannot replace a "
            f"{serving.manifest.task} one (the routes using {ref.name} expect the latter)"
        )


def load_bundle(
    ref: BundleRef, *, precision: Precision, threads: int | None, keyring: Verifier | None
) -> Classifier | Encoder:
    """Every check of `load_classifier` (or `load_encoder` for an embedding bundle), plus:
    the bundle is filed under its own name and version, so the version a result names is
    the folder it came from."""
    load = load_encoder if load_manifest(ref.path).task == "embedding" else load_classifier
    classifier = load(ref.path, precision=precision, threads=threads, keyring=keyring)
    manifest = classifier.manifest
    if (manifest.name, manifest.version) != (ref.name, ref.version):
        raise BundleError(
            f"{ref.path}: manifest says {manifest.name} {manifest.version}, "
            f"but the folder is {ref.name}/{ref.version}"
        )
    return classifier
