"""The rule catalogue: one Markdown page describing every registered rule, generated from the rules themselves.

The page is committed as ``server/diagnose/rules.md`` (``python -m deepdive.diagnose.rules --write
server/diagnose/rules.md``); a diagnostic's link in the editor opens it at the rule's anchor (``#dd110``, the
lower-case code), so the anchor of each section is part of the contract with the daemon. A test fails when the
committed page and the rules drift apart.
"""

from __future__ import annotations

import inspect

from deepdive.diagnose.rules.base import RULES, Rule

_INTRO = """\
# Deepdive performance rules

Deepdive checks Python files for code that makes a PyTorch training step slower than it needs to be. Each
finding has a code (`DD110`), a one-line message that names the fix and, for most rules, a quick fix
(*Fix DD110: …* in the editor's light bulb). **Diagnose performance** (the CodeLens above the training loop, or
`deepdive diagnose SCRIPT`) then measures a few steps and shows which findings cost how much of the step.

This page is generated from the rules' own descriptions: `python -m deepdive.diagnose.rules --write
server/diagnose/rules.md` rewrites it.

## Suppressing a finding

Add a comment to the line the finding is on:

```python
total += loss.item()  # deepdive: ignore[DD110]
total += loss.item()  # deepdive: ignore[DD110, DD113]
total += loss.item()  # deepdive: ignore
```

`# deepdive: ignore[CODES]` drops the findings of those rules on that line; a bare `# deepdive: ignore`
drops every finding on it. The editor's *Ignore DD110 on this line* quick fix writes the comment for you.

## Turning rules off

- In the editor: the setting `deepdive.diagnostics.disabledRules`, a list of codes
  (`"deepdive.diagnostics.disabledRules": ["DD101", "DD110"]`); `deepdive.diagnostics.enabled: false` turns
  the diagnostics off altogether.
- On the command line: `deepdive diagnose SCRIPT --disable DD101,DD110`.

Rules marked *CUDA only* report only in scripts that use CUDA (that mention `"cuda"`, `.cuda()` or
`torch.cuda`): their cost exists on a GPU only.
"""


def _anchor(rule: Rule) -> str:
    return rule.code.lower()


def _table(rules: list[Rule]) -> str:
    rows = ["| code | name | category | quick fix | CUDA only | what it finds |",
            "| --- | --- | --- | --- | --- | --- |"]
    for rule in rules:
        rows.append(f"| [{rule.code}](#{_anchor(rule)}) | {rule.name} | {rule.category} | "
                    f"{'yes' if rule.fixable else 'no'} | {'yes' if rule.cuda_only else 'no'} | {rule.summary} |")
    return "\n".join(rows) + "\n"


def _section(rule: Rule) -> str:
    doc = inspect.cleandoc(rule.check.__doc__ or rule.summary)
    facts = (f"*Category:* {rule.category} · *Quick fix:* {'yes' if rule.fixable else 'no'} · "
             f"*CUDA only:* {'yes' if rule.cuda_only else 'no'}")
    return f'<a id="{_anchor(rule)}"></a>\n\n## {rule.code} {rule.name}\n\n{facts}\n\n{doc}\n'


def rules_markdown() -> str:
    """The catalogue page: how to suppress and turn off rules, a table of every registered rule, and one section
    per rule (its code, name, category, whether it has a quick fix and is CUDA-only, and its description)."""
    rules = [RULES[code] for code in sorted(RULES)]
    parts = [_INTRO, f"## The rules ({len(rules)})\n\n{_table(rules)}", *(_section(rule) for rule in rules)]
    return "\n".join(parts)
