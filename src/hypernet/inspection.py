"""A plain description of a hypernetwork file (or of a LoRA file, e.g. one `hypernet
export-lora` wrote), for `hypernet inspect` and the library."""

from __future__ import annotations

import os
from pathlib import Path

from .fileio import short_hash
from .formats import detect_format, load, read_optimizer_state, sidecar_path

# The widths entering to_k/to_v in each model family's UNet (contract §3.2): the
# cross-attention (text) width first, then the self-attention widths. SDXL's 320-channel
# level has no attention, so it takes no 320 module.
FAMILY_WIDTHS = {
    "SD 1.x": (768, 320, 640, 1280),
    "SD 2.x": (1024, 320, 640, 1280),
    "SDXL": (2048, 640, 1280),
}


def fitting_families(sizes) -> dict:
    """{family: {"sizes": the file's sizes that family's UNet uses, "cross_attention":
    whether one of them is its text width}} for the families where at least one applies."""
    sizes = [int(size) for size in sizes]
    found = {}
    for family, widths in FAMILY_WIDTHS.items():
        used = [size for size in sizes if size in widths]
        if used:
            found[family] = {"sizes": used, "cross_attention": widths[0] in used}
    return found


def describe_families(families: dict) -> str:
    """"SD 1.x (768, 320, 640, 1280), SDXL (640, 1280: self-attention only)"."""
    if not families:
        return "none (no size is an SD 1.x, SD 2.x or SDXL attention width: the file changes nothing there)"
    parts = []
    for family, fit in families.items():
        note = "" if fit["cross_attention"] else ": self-attention only"
        parts.append(f"{family} ({', '.join(map(str, fit['sizes']))}{note})")
    return ", ".join(parts)


def inspect_file(path) -> dict:
    """Everything a user asks about a file, as JSON-able values (`kind` "lora" for a LoRA)."""
    path = Path(path)
    if detect_format(path) == "safetensors":
        from .lora_export import describe_lora

        lora = describe_lora(path)
        if lora is not None:
            return lora
    network = load(path)
    metadata = network.metadata
    optimizer = None
    if sidecar_path(path).exists():
        state = read_optimizer_state(path)
        optimizer = {"present": True, "matches": state is not None, "optimizer_name": state.optimizer_name if state else None}
    return {
        "path": str(path),
        "format": detect_format(path),
        **network_facts(network),
        "bytes_on_disk": os.path.getsize(path),
        "step": metadata.step,
        "sd_checkpoint": metadata.sd_checkpoint,
        "sd_checkpoint_name": metadata.sd_checkpoint_name,
        "optional_info": metadata.optional_info,
        "sha256_short": short_hash(path),
        "optimizer_sidecar": optimizer,
        "multiplier_calibration": [list(point) for point in metadata.multiplier_calibration or ()] or None,
    }


def network_facts(network) -> dict:
    """What a loaded network is, as JSON-able values: the part of a file's description
    that `inspect_file` and `Library.info` share."""
    structure, metadata = network.structure, network.metadata
    return {
        "name": metadata.name,
        "sizes": network.sizes,
        "families": fitting_families(network.sizes),
        "layer_structure": list(structure.layer_structure),
        "widths": {size: structure.widths(size) for size in network.sizes},
        "activation": structure.activation or "linear",
        "layer_norm": structure.layer_norm,
        "dropout_structure": list(structure.dropout_structure),
        "activate_output": structure.activate_output,
        "weight_initialization": metadata.weight_initialization,
        "parameters": network.parameter_count(),
    }


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def _table(rows) -> str:
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def format_lora_description(info: dict) -> str:
    rows = [
        ("file", info["path"]),
        ("format", f"LoRA ({info['layout']} layout)"),
        ("modules", str(info["modules"])),
        ("ranks", ", ".join(map(str, info["ranks"])) or "none"),
        ("size on disk", f"{human_bytes(info['bytes_on_disk'])} ({info['bytes_on_disk']:,} bytes)"),
    ]
    export = info["export"]
    if export:
        fit = export.get("fit_error") or {}
        base = export.get("base_model") or {}
        rank = export.get("rank") or {}
        rows += [
            ("exported from", f"{export.get('source_name')} (sha256 {export.get('source_sha256')})"),
            ("multiplier", str(export.get("multiplier"))),
            ("method", str(export.get("method"))),
            ("rank asked", str(rank.get("requested"))),
            ("fit error", f"max {fit.get('max', 0):.2e}, mean {fit.get('mean', 0):.2e} on {fit.get('measured_on')}"
                          + (f", {fit['prompts']} prompts" if fit.get("prompts") else "")),
            ("base model", f"{base.get('name')}" + (f" [{base['hash']}]" if base.get("hash") else "")),
            ("note", str(export.get("note"))),
        ]
    elif info["other_metadata"]:
        rows += [(key, value if len(value) <= 80 else value[:77] + "...") for key, value in sorted(info["other_metadata"].items())]
    return _table(rows)


def format_description(info: dict) -> str:
    if info.get("kind") == "lora":
        return format_lora_description(info)
    trained_on = info["sd_checkpoint_name"] or "unknown"
    if info["sd_checkpoint"]:
        trained_on += f" [{info['sd_checkpoint']}]"
    widths = "; ".join(f"{size}: {' -> '.join(map(str, w))}" for size, w in info["widths"].items())
    optimizer = info["optimizer_sidecar"]
    optimizer_text = "none"
    if optimizer:
        optimizer_text = f"{optimizer['optimizer_name']} (matches this file)" if optimizer["matches"] else "present but stale (hash differs; ignored)"
    rows = [
        ("file", info["path"]),
        ("format", info["format"]),
        ("name", info["name"]),
        ("sizes", ", ".join(map(str, info["sizes"]))),
        ("fits", describe_families(info["families"])),
        ("layer structure", ", ".join(f"{w:g}" for w in info["layer_structure"])),
        ("widths", widths),
        ("activation", info["activation"] + (" (also after output layer)" if info["activate_output"] and info["activation"] != "linear" else "")),
        ("layer norm", "yes" if info["layer_norm"] else "no"),
        ("dropout", ", ".join(f"{p:g}" for p in info["dropout_structure"])),
        ("weight init", info["weight_initialization"]),
        ("parameters", f"{info['parameters']:,}"),
        ("size on disk", f"{human_bytes(info['bytes_on_disk'])} ({info['bytes_on_disk']:,} bytes)"),
        ("step", str(info["step"])),
        ("trained on", trained_on),
        ("sha256 (short)", info["sha256_short"]),
        ("optimizer state", optimizer_text),
    ]
    curve = info.get("multiplier_calibration")
    if curve:
        at = {user: internal for user, internal in curve}
        rows.append(("calibrated", "multiplier " + ", ".join(f"{u:g} -> {at[u]:.3g}" for u in (0.25, 0.5, 0.75) if u in at)
                     + f" ({len(curve)} points; `hypernet calibrate --remove` deletes it)"))
    if info["optional_info"]:
        rows.append(("info", info["optional_info"]))
    return _table(rows)
