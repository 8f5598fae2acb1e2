"""Every prompt text a dialplan can speak, for pre-rendering and length checks."""

from __future__ import annotations

from engine.dialog.schema import AskNode, Dialplan
from engine.dialog.templating import is_static, render


def all_texts(plan: Dialplan) -> list[str]:
    """Raw prompt texts (templates unrendered), in plan order."""
    texts: list[str] = []
    pre = plan.preamble
    for t in (pre.disclosure, pre.recording_notice if pre.recording else None):
        if t:
            texts.append(t)
    if plan.voicemail.action == "leave_message" and plan.voicemail.say:
        texts.append(plan.voicemail.say)
    for node in plan.nodes.values():
        texts += node.texts()
        if isinstance(node, AskNode):
            texts += node.no_input.texts() + node.no_match.texts()
    for g in plan.globals:
        texts += g.texts()
    return texts


def static_prompts(plan: Dialplan, *, variants: bool = True) -> list[str]:
    """Every prompt renderable before a call (templates resolved with the plan's defaults), deduplicated;
    with `variants`, the A/B variants' prompts too."""
    out: list[str] = []
    plans = [plan] + ([plan.with_variant(v) for v in plan.variants] if variants else [])
    for p in plans:
        for t in all_texts(p):
            r = t if is_static(t) else render(t, p.variables)
            if r and r not in out:
                out.append(r)
    return out
