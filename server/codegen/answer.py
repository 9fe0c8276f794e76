"""The program in a model's answer: the whole answer's (:func:`extract_code`) and, while it streams, its code only
(:class:`CodeStream`), so that the editor shows code, not the model's prose or reasoning."""

from __future__ import annotations

import re

__all__ = ["extract_code", "CodeStream"]


_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.S)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)(?:\n[ \t]*```|\Z)", re.S)


def extract_code(text: str) -> str:
    """The program in a model's answer: the longest ```python block (else the longest plain ``` block,
    else the whole answer), reasoning (``<think>...</think>``) removed."""
    text = _THINK.sub("", text)
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    python = [body for lang, body in blocks if lang in ("python", "py", "python3")]
    plain = [body for lang, body in blocks if not lang]
    pick = python or plain
    code = max(pick, key=len) if pick else text
    code = code.strip("\n")
    return code + "\n" if code.strip() else ""


class CodeStream:
    """Turns a model's streamed answer into the streamed program: what goes out as ``text`` partials.

    Prose before the first fence, the fence lines themselves, reasoning (``<think>...</think>``) and
    everything after the closing fence are dropped, so that the editor shows code while it streams.
    An answer with no fence within its first :data:`PROSE_LIMIT` characters is taken as bare code and
    passed through. The final program is :func:`extract_code` of the whole answer (the same for a
    single block; the longest block when there are several).
    """

    PROSE_LIMIT = 800

    def __init__(self) -> None:
        self.state = "start"  # start -> (think ->) code -> after, or start -> raw
        self.buf = ""
        self.mid = False  # in "code": part of the current line went out already

    def feed(self, text: str) -> str:
        self.buf += text
        out: list[str] = []
        while True:
            if self.state == "start":
                head = self.buf.lstrip()
                if head.startswith("<think>") or "<think>".startswith(head) and head:
                    if not head.startswith("<think>"):
                        break  # maybe "<thi": wait
                    end = self.buf.find("</think>")
                    if end < 0:
                        break
                    self.buf = self.buf[end + len("</think>") :]
                    continue
                fence = self.buf.find("```")
                if fence >= 0:
                    eol = self.buf.find("\n", fence)
                    if eol < 0:
                        break  # the fence line is not complete yet
                    self.state, self.buf = "code", self.buf[eol + 1 :]
                    continue
                if len(self.buf) > self.PROSE_LIMIT:
                    self.state = "raw"
                    continue
                break
            if self.state == "raw":
                out.append(self.buf)
                self.buf = ""
                break
            if self.state == "code":
                # Complete lines go out unless one is the closing fence; a partial line goes out
                # once it cannot be the start of a fence.
                while True:
                    eol = self.buf.find("\n")
                    line = self.buf if eol < 0 else self.buf[: eol + 1]
                    if self.mid:  # the rest of a line already partly out: never a fence
                        out.append(line)
                        self.buf = "" if eol < 0 else self.buf[eol + 1 :]
                        self.mid = eol < 0
                        if eol < 0:
                            break
                        continue
                    if line.lstrip().startswith("```"):
                        self.state, self.buf = "after", ""
                        break
                    if eol < 0:
                        stripped = line.lstrip()
                        if line and stripped and not "```".startswith(stripped):
                            out.append(line)
                            self.buf = ""
                            self.mid = True
                        break
                    out.append(line)
                    self.buf = self.buf[eol + 1 :]
                break
            self.buf = ""  # after the closing fence
            break
        return "".join(out)

    def finish(self) -> str:
        """What is left at the end of the answer (a bare answer shorter than the prose limit)."""
        rest, self.buf = self.buf, ""
        if self.state in ("start", "raw") and "```" not in rest:
            return _THINK.sub("", rest)
        if self.state == "code" and (self.mid or not rest.lstrip().startswith("```")):
            return rest
        return ""
