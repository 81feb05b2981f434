"""`hypernet prompt check`: how a prompt is read (warnings, networks, emphasis, schedule)."""

from __future__ import annotations

import json

from ..prompt import explain_prompt


def register(sub) -> None:
    parser = sub.add_parser("prompt", help="inspect prompts as the webui reads them", description=__doc__)
    actions = parser.add_subparsers(dest="prompt_command", metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="show warnings, extra-network tags, weighted segments and the step schedule of a prompt",
        description="Show how a prompt is read: warnings with positions, extra-network tags, the weighted "
        "segments of each scheduled text and the prompt-editing schedule.",
    )
    check.add_argument("text", metavar="TEXT", help="the prompt (quote it)")
    check.add_argument(
        "--steps",
        type=int,
        default=None,
        help="sampling steps: editing steps are checked against it (the schedule uses 20 when not given)",
    )
    check.add_argument("--negative", action="store_true", help="read TEXT as a negative prompt (no AND splitting)")
    check.add_argument("--json", action="store_true", help="print JSON instead of text")
    check.set_defaults(func=run_check)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def run_check(args) -> int:
    if args.steps is not None and args.steps < 1:
        from ..errors import PromptError

        raise PromptError(f"--steps must be at least 1, got {args.steps}")
    info = explain_prompt(args.text, args.steps, positive=not args.negative)
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    print(format_description(info))
    return 0


def format_description(info: dict) -> str:
    lines = []
    warnings = info["warnings"]
    lines.append(f"warnings: {len(warnings) or 'none'}")
    lines += [f"  position {warning['position']}: {warning['message']} [{warning['code']}]" for warning in warnings]
    if "network_error" in info:
        lines.append(f"networks: error: {info['network_error']}")
    else:
        networks = info["networks"]
        lines.append(f"networks: {len(networks) or 'none'}")
        lines += [f"  {kind} {name!r} x {multiplier:g}" for kind, name, multiplier in networks]
    lines.append(f"text without tags: {info['text']!r}")
    parts = info["parts"]
    for number, part in enumerate(parts, 1):
        if len(parts) > 1 or part["weight"] != 1.0:
            lines.append(f"AND part {number}, guidance weight {part['weight']:g}: {part['text']!r}")
        lines.append(f"schedule ({info['steps']} steps):")
        for entry in part["schedule"]:
            lines.append(f"  until step {entry['until']}: {entry['text']!r}")
            lines += [f"      {weight!r:>22}  {segment!r}" for segment, weight in entry["segments"]]
    return "\n".join(lines)
