"""Turn a run's raw results into one side-by-side table (markdown, also printed)."""

from __future__ import annotations

from typing import Any

REF, LITE = "tb", "lite"
VARIANT_TITLES = {"fast": "fast (384)", "base": "base (1024)", "pb": "pyramid blending (384 + photo size)"}
NOISE_NOTE = (
    "Numbers are noisy where the cores are shared with other work (see the load average): compare "
    "within one run (ratios), not across runs. Weights are random (the same checkpoint for both "
    "packages): speed and memory do not depend on them. Random-weight maps are grainy, with many "
    "pixels near 0.5, so the IoU of reduced-precision masks is a pessimistic bound for real weights."
)
CUDA_NOTE = (
    "On CUDA, PyTorch runs float32 convolutions in TF32 by default (both packages), so fp32 maps "
    "differ by more than on the CPU; compare agreement on the CPU."
)

Row = tuple[str, str, str, str]


def _na(run: dict[str, Any] | None) -> str | None:
    """Why a run has no numbers, or None when it has them."""
    if run is None:
        return "n/a (not run)"
    if "na" in run:
        return f"n/a ({run['na']})"
    if "error" in run:
        return f"error ({run['error'][:160]})"
    return None


def _s(x: float) -> str:
    return f"{x:.3f} s" if x < 10 else f"{x:.1f} s"


def _mib(x: float) -> str:
    return f"{x / 1024:.2f} GiB" if x >= 1024 else f"{x:.0f} MiB"


def _faster(ref: float, lite: float) -> str:
    """Speed of ours relative to the reference, from time taken: "1.30x faster" or "2.00x slower"."""
    if lite <= ref:
        return f"{ref / lite:.2f}x faster"
    return f"{lite / ref:.2f}x slower"


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.0f} %"


def _cell(run: dict[str, Any] | None, fmt: Any) -> str:
    reason = _na(run)
    if reason is not None:
        return reason
    try:
        return fmt(run)
    except (KeyError, TypeError, ZeroDivisionError):
        return "n/a"


def _both(ref: dict | None, lite: dict | None, key: str) -> tuple[float, float] | None:
    if _na(ref) or _na(lite) or key not in ref or key not in lite:  # type: ignore[operator]
        return None
    return ref[key], lite[key]  # type: ignore[index]


def _side_by_side(label: str, ref: dict | None, lite: dict | None, fmt: Any, note: str = "") -> Row:
    """One table row: ``fmt`` applied to each side's run (or its n/a reason)."""
    return (label, _cell(ref, fmt), _cell(lite, fmt), note)


def _latency(run: dict[str, Any]) -> str:
    return f"{_s(run['median_s'])} (best {_s(min(run['times_s']))}, x{len(run['times_s'])})"


def _gflops_cell(run: dict[str, Any], peaks: dict[str, float]) -> str:
    achieved = run["flops"] / run["median_s"] / 1e9
    parts = [f"{achieved:.0f} GFLOP/s"]
    for name in ("fp32", "bf16"):
        if name in peaks:
            parts.append(f"{_pct(achieved, peaks[name])} of {name} peak")
    return ", ".join(parts)


def variant_rows(results: dict[str, Any], variant: str) -> list[Row]:
    runs = results.get("runs", {})
    ref = runs.get(f"{REF}/{variant}/fp32")
    lite = runs.get(f"{LITE}/{variant}/fp32")
    peaks = results.get("peaks", {}).get("peaks_gflops", {})
    title = VARIANT_TITLES[variant]
    rows: list[Row] = []

    pair = _both(ref, lite, "median_s")
    rows.append(_side_by_side(f"{title}: median latency", ref, lite, _latency, _faster(*pair) if pair else ""))
    pair = _both(ref, lite, "flops")
    rows.append(_side_by_side(
        f"{title}: GFLOP per image", ref, lite, lambda r: f"{r['flops'] / 1e9:.0f}",
        f"{pair[1] / pair[0]:.2f}x the FLOPs" if pair else "",
    ))
    rows.append(_side_by_side(
        f"{title}: achieved (vs measured matmul peaks)", ref, lite, lambda r: _gflops_cell(r, peaks)
    ))
    pair = _both(ref, lite, "rss_after_load_mib")
    rows.append(_side_by_side(
        f"{title}: RSS after loading the checkpoint (libraries alone)", ref, lite,
        lambda r: f"{_mib(r['rss_after_load_mib'])} ({_mib(r['rss_before_load_mib'])})",
        f"{_pct(pair[1], pair[0])} of ref" if pair else "",
    ))
    rows.append(_side_by_side(f"{title}: load time (imports excluded)", ref, lite, lambda r: _s(r["load_s"])))
    pair = _both(ref, lite, "peak_rss_mib")
    rows.append(_side_by_side(
        f"{title}: peak RSS (fresh process)", ref, lite, lambda r: _mib(r["peak_rss_mib"]),
        f"{_pct(pair[1], pair[0])} of ref" if pair else "",
    ))
    if any((r or {}).get("cuda_peak_mib") for r in (ref, lite)):
        rows.append(_side_by_side(
            f"{title}: peak GPU memory allocated", ref, lite, lambda r: _mib(r["cuda_peak_mib"])
        ))
    agree = results.get("agreement", {}).get(variant)
    if agree:
        rows.append((
            f"{title}: agreement of the maps (lite vs ref)",
            "",
            agree.get("text", ""),
            "target >= 99.9 % within 1 level",
        ))
    return rows


def batch_rows(results: dict[str, Any]) -> list[Row]:
    batch = results.get("batch", {})
    ref, lite = batch.get(REF), batch.get(LITE)
    if ref is None and lite is None:
        return []
    n = (ref or lite or {}).get("spec", {}).get("photos")
    n = len(n) if isinstance(n, list) else "?"

    def one(r: dict[str, Any]) -> str:
        return f"{_s(r['one_at_a_time_s'])} ({r['photos'] / r['one_at_a_time_s']:.2f} photos/s)"

    def batched(r: dict[str, Any]) -> str:
        if "batched_na" in r:
            return f"n/a ({r['batched_na']})"
        return f"{_s(r['batched_s'])} ({r['photos'] / r['batched_s']:.2f} photos/s, batch {r['batch_size']})"

    pair = _both(ref, lite, "one_at_a_time_s")
    rows: list[Row] = [
        _side_by_side(f"fast, {n} photos one at a time", ref, lite, one, _faster(*pair) if pair else ""),
    ]
    note = ""
    if not _na(lite) and "batched_s" in lite and not _na(ref):  # type: ignore[operator]
        note = f"{_faster(ref['one_at_a_time_s'], lite['batched_s'])} than ref one at a time"  # type: ignore[index]
    rows.append(_side_by_side(f"fast, {n} photos batched", ref, lite, batched, note))
    rows.append(_side_by_side(f"fast, {n} photos: peak RSS", ref, lite, lambda r: _mib(r["peak_rss_mib"])))
    return rows


def precision_rows(results: dict[str, Any]) -> list[Row]:
    runs = results.get("runs", {})
    rows: list[Row] = []
    for key in results.get("precision_keys", []):
        precision, variant = key.split("/")
        ref = runs.get(f"{REF}/{variant}/{precision}")
        lite = runs.get(f"{LITE}/{variant}/{precision}")
        ref32 = runs.get(f"{REF}/{variant}/fp32")
        lite32 = runs.get(f"{LITE}/{variant}/fp32")
        title = f"{VARIANT_TITLES[variant]}, {precision}"
        note = []
        if not _na(lite) and not _na(ref32):
            note.append(f"{_faster(ref32['median_s'], lite['median_s'])} than ref fp32")  # type: ignore[index]
        if not _na(lite) and not _na(lite32):
            note.append(f"{_faster(lite32['median_s'], lite['median_s'])} than lite fp32")  # type: ignore[index]
        rows.append(_side_by_side(f"{title}: median latency", ref, lite, _latency, "; ".join(note)))
        rows.append(_side_by_side(f"{title}: peak RSS", ref, lite, lambda r: _mib(r["peak_rss_mib"])))
        acc = results.get("precision", {}).get(key)
        if acc:
            rows.append((f"{title}: vs fp32 map", "", acc.get("text", ""), ""))
    return rows


def build_rows(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for variant in ("fast", "base", "pb"):
        if any(k.endswith(f"/{variant}/fp32") for k in results.get("runs", {})):
            rows.extend(variant_rows(results, variant))
    rows.extend(batch_rows(results))
    rows.extend(precision_rows(results))
    return rows


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def machine_line(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    flags = ", ".join(m.get("cpu_flags", [])) or "none of AVX-512/AMX"
    parts = [
        f"{m.get('cpu', '?')} ({m.get('logical_cpus', '?')} logical CPUs; {flags})",
        f"{m.get('threads', '?')} threads",
        f"torch {m.get('torch', '?')}",
        f"Python {m.get('python', '?')}",
        f"device {m.get('device', '?')}" + (f" ({m['gpu']})" if m.get("gpu") else ""),
    ]
    load = results.get("loadavg")
    if load:
        parts.append(f"load average {load['start'][0]:.2f} at start, {load['end'][0]:.2f} at end")
    return "; ".join(parts)


def peaks_line(results: dict[str, Any]) -> str:
    peaks = results.get("peaks", {})
    if _na(peaks):
        return f"Matrix-multiply peaks: {_na(peaks)}"
    gf = peaks.get("peaks_gflops", {})
    text = ", ".join(f"{name} {value:.0f} GFLOP/s" for name, value in gf.items())
    return f"Matrix-multiply peaks measured in this run (big torch.mm, best round at start and end): {text}."


def to_markdown(results: dict[str, Any]) -> str:
    ref_v = results.get("versions", {}).get(REF, "?")
    lite_v = results.get("versions", {}).get(LITE, "?")
    lines = [
        f"Machine: {machine_line(results)}.",
        "",
        peaks_line(results),
        "",
        f"| measurement | transparent-background {ref_v} (ref) | inspyrenet-lite {lite_v} | lite vs ref |",
        "| --- | --- | --- | --- |",
    ]
    for row in build_rows(results):
        lines.append("| " + " | ".join(_escape(c) for c in row) + " |")
    lines += ["", NOISE_NOTE]
    if str(results.get("machine", {}).get("device", "")).startswith("cuda"):
        lines.append(CUDA_NOTE)
    ck = results.get("checkpoint")
    if ck and ck.get("built_by"):
        lines.append(
            f"Checkpoints: full-size SwinB, random weights in the authors' layout (one per mode, BatchNorm "
            f"statistics calibrated on the shared photos), built by {ck['built_by']} "
            f"({ck['size_mib']:.0f} MiB .pth each). Photo: {results.get('image')}; "
            f"pyramid blending photo: {results.get('pb_image')}."
        )
    return "\n".join(lines) + "\n"
