"""`deepdive/generate` in the daemon: the codegen pipeline in a worker thread, streamed to the client.

The pipeline (:mod:`deepdive.codegen.pipeline`) is synchronous and slow in parts (a model streams
tokens, the verifier runs the program in a sandboxed subprocess), so it runs through
``asyncio.to_thread`` and the event loop keeps answering other requests. What it produces on the way
goes to the client as ``$/progress`` notifications: :class:`~deepdive.protocol.GeneratePartial`
values on the request's partial-result token, and phases as work-done progress on its work-done
token. ``$/cancelRequest`` cancels the handler's task; the thread sees the cancel event and stops at
its next check (a model stops within a token or two, the sandbox's process group is killed).

The pipeline speaks codegen's own types (:mod:`deepdive.codegen.generation`);
:mod:`deepdive.daemon.generate_wire` converts the request, each partial and the result to and from
the wire's.

Generated code runs only on this request, and never for an untrusted workspace: there the daemon
skips verification and says so in the result (every stated property is then "not checked").

A request the builtin generator cannot build as asked is answered, not refused: a result with no
program whose message says what is missing and what a local model would add (see
:func:`deepdive.codegen.pipeline.generate`). Errors are for input nothing can work with: an empty
prompt, an unknown framework, a model backend that cannot start.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any

import attrs
from lsprotocol import types

from deepdive.codegen.generation import GeneratePartial
from deepdive.daemon.generate_wire import params_from_wire, partial_to_wire, result_to_wire
from deepdive.protocol import GenerateParams, GenerateResult, to_wire

if TYPE_CHECKING:
    from deepdive.daemon.server import DeepdiveServer

log = logging.getLogger(__name__)

UNTRUSTED = "verification skipped: the workspace is not trusted, so generated code is not run"


class GenerateRefused(ValueError):
    """Input the pipeline cannot work with (an empty or unintelligible prompt, a bad endpoint)."""


async def generate(ls: "DeepdiveServer", params: GenerateParams) -> GenerateResult:
    from deepdive.codegen import pipeline

    if not params.prompt.strip():
        raise GenerateRefused("the prompt is empty: describe the program in a sentence, e.g. 'a CNN for MNIST'")
    request = params_from_wire(params)
    skipped = None
    if request.verify and not ls.trusted:
        request.verify = False
        skipped = UNTRUSTED
    loop = asyncio.get_running_loop()
    cancel = threading.Event()
    work = params.work_done_token
    partial = params.partial_result_token

    def send(token: Any, value: Any) -> None:
        ls.protocol.notify(types.PROGRESS, types.ProgressParams(token=token, value=value))

    def on_partial(p: GeneratePartial) -> None:
        # called on the pipeline's thread: hand over to the loop, which owns the transport
        if partial is not None:
            loop.call_soon_threadsafe(send, partial, to_wire(partial_to_wire(p)))
        if work is not None and p.kind in ("phase", "check"):
            message = p.text if p.kind == "phase" else f"{p.check.name}: {'ok' if p.check.ok else 'failed'}"
            report = types.WorkDoneProgressReport(message=message, cancellable=True)
            loop.call_soon_threadsafe(ls.work_done_progress.report, work, report)

    if work is not None:
        ls.work_done_progress.begin(work, types.WorkDoneProgressBegin(title="Deepdive: generating code", cancellable=True))
    outcome = "cancelled"
    try:
        result = await asyncio.to_thread(pipeline.generate, request, on_partial=on_partial, cancel=cancel)
        outcome = "verified" if result.verified else (result.message or "done")  # the work-done end line
    except asyncio.CancelledError:
        cancel.set()
        raise
    except pipeline.Cancelled:
        cancel.set()
        raise asyncio.CancelledError() from None
    except ValueError as exc:
        outcome = str(exc)
        raise GenerateRefused(str(exc)) from None
    finally:
        if work is not None:
            ls.work_done_progress.end(work, types.WorkDoneProgressEnd(message=outcome))
            ls.work_done_progress.tokens.pop(work, None)
    if skipped is not None and result.code:
        result.message = skipped
        result.properties = [attrs.evolve(p, detail=skipped) for p in result.properties]
    return result_to_wire(result)
