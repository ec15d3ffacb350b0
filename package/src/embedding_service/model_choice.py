"""Which served model answers a request: the one its `model` names, else the only one of a kind
its route needs.

One server serves one model (MODEL_DIR) or several (MODELS: an embedder, a reranker and a sparse
encoder, say). A name is looked up in the settings, so an unknown model is a 404 even while the
models load; the kind is read from the loaded model (contract.KIND_ROUTES says which kinds answer
which routes), and a model of another kind is a 400 `wrong_model_kind` that names both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from embedding_service import contract
from embedding_service.errors import ApiError, bad_request, not_ready

if TYPE_CHECKING:
    from embedding_service.api import EmbeddingAPI


@dataclass(frozen=True)
class Served:
    model_id: str
    embedder: Any  # model.Embedder (or a test's stand-in with a `spec`)


def named_model(api: EmbeddingAPI, name: str | None, param: str | None = "model") -> str | None:
    """The served id `name` refers to: an id or its last part (any case), or for the first model one
    of MODEL_ALIASES; None when no name is given; 404 otherwise."""
    if name is None:
        return None
    wanted = name.lower()
    for index, entry in enumerate(api.settings.served_models):
        model_id = entry.model_id.lower()
        aliases = {alias.lower() for alias in api.settings.model_aliases} if index == 0 else set()
        if wanted in {model_id, model_id.split("/")[-1]} | aliases:
            return entry.model_id
    served = ", ".join(repr(entry.model_id) for entry in api.settings.served_models)
    raise ApiError(
        404,
        f"model {name!r} is not served here; this server serves {served} (GET /v1/models)",
        "invalid_request_error",
        param,
        contract.ErrorCode.MODEL_NOT_FOUND,
    )


def serving(api: EmbeddingAPI, model_id: str | None, route: str, *kinds: str) -> Served:
    """The loaded model that answers `route`: the named one, which must be of one of `kinds`, or,
    unnamed, the only served model of such a kind (the only model at all on a one-model server)."""
    if not api.ready:
        raise not_ready()
    models = api.models
    if model_id is not None:
        chosen = Served(model_id, models[model_id])
    else:
        fitting = [Served(i, e) for i, e in models.items() if e.spec.kind in kinds]
        if len(fitting) > 1:
            raise bad_request(
                f"{route}: several models here answer it ({_listing(fitting)}); name one with `model`",
                param="model",
            )
        if not fitting and len(models) > 1:
            everything = _listing(Served(*item) for item in models.items())
            raise _wrong_kind(route, kinds, f"this server serves {everything}")
        chosen = fitting[0] if fitting else Served(*next(iter(models.items())))
    kind = chosen.embedder.spec.kind
    if kind not in kinds:
        answers = ", ".join(contract.KIND_ROUTES[kind])
        raise _wrong_kind(route, kinds, f"{chosen.model_id!r} is {_a(kind)} model, which answers {answers}")
    return chosen


def _wrong_kind(route: str, kinds: tuple[str, ...], what_is_here: str) -> ApiError:
    return bad_request(
        f"{route} needs {' or '.join(_a(kind) + ' model' for kind in kinds)}; {what_is_here} "
        "(GET /v1/models lists each model's kind)",
        param="model", code=contract.ErrorCode.WRONG_MODEL_KIND,
    )


def _listing(served) -> str:
    return ", ".join(f"{s.model_id!r} ({s.embedder.spec.kind})" for s in served)


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def model_card(api: EmbeddingAPI, model_id: str) -> dict:
    """GET /v1/models' entry for one served model; its kind and prompts once it is loaded."""
    embedder = api.models.get(model_id) if api.ready else None
    return {
        "id": model_id,
        "object": "model",
        "created": 0,
        "owned_by": model_id.split("/")[0],
        **({"kind": embedder.spec.kind, **embedder.spec.prompt_info()} if embedder is not None else {}),
    }
