"""Rerank 50 real products for one query with the default judge, three ways, and print a table.

  (a) naive: transformers generate() per pair (one token, full vocabulary scores)
  (b) ours: label-token scoring, length batching, the instruction head's KV cached, each query's
      prefix prefilled once and attended to by all of its products (shared-prefix attention)
  (c) ours without prefix reuse

Also measures fp32 and bf16 matmul peaks in the same run and reports (b)'s FLOP utilisation.
Run: .venv/bin/python bench/rerank_speed.py [--queries 8] [--naive-queries 2] [--dtype auto]

On a GPU (see docs/benchmarks.md): --device cuda --dtype bfloat16 synchronises around every timed
region, warms up --warmup requests, measures the matmul peaks with 8192^3 products, and can add
a throughput table (--throughput-queries N: N queries x 50 products in one label_probs call, at
each of --throughput-batch-tokens) and a torch.profiler summary (--profile-dir). --random-weights
builds --model's architecture with random weights (speed only: the labels are meaningless), and
--queries-file reads the (query, titles) sets written here by --dump-queries, for machines
without ../shared/data/homedepot.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import torch
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from reranker.backends import ScoreJob, build_backend, shared_prefix
from reranker.backends.base import default_batch_tokens
from reranker.backends.transformers_backend import TransformersBackend
from reranker.core import PromptFormat, label_probs_from_logits, load_scheme
from reranker.models.loading import ModelSpec, cpu_facts, cpu_summary, load_model, pick_device, pick_dtype, resolve_model_path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "homedepot"
N_PRODUCTS = 50


def load_queries(n: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """Per query: its judged dev titles, topped up to 50 with catalog titles sharing a query word."""
    rng = random.Random(seed)
    if not (DATA / "dev.jsonl").is_file():
        raise SystemExit(f"no Home Depot data at {DATA}: this benchmark needs ../shared/data/homedepot")
    by_query: dict[str, list[str]] = {}
    for line in open(DATA / "dev.jsonl"):
        row = json.loads(line)
        by_query.setdefault(row["query"], []).append(row["title"])
    catalog = [json.loads(line)["title"] for line in open(DATA / "products.jsonl")]
    out = []
    for query in rng.sample(sorted(by_query), n):
        words = [w for w in query.lower().split() if len(w) > 2]
        pool = [t for t in catalog if any(w in t.lower() for w in words)] or catalog
        titles = list(dict.fromkeys(by_query[query]))
        titles += rng.sample(pool, min(len(pool), N_PRODUCTS * 2))
        titles = list(dict.fromkeys(titles))[:N_PRODUCTS]
        titles += rng.sample(catalog, N_PRODUCTS - len(titles))
        out.append((query, titles))
    return out


def read_queries(path: str, n: int) -> list[tuple[str, list[str]]]:
    """The first n (query, titles) sets of a file written by --dump-queries."""
    sets = [(q, list(t)) for q, t in json.loads(Path(path).read_text())]
    if len(sets) < n:
        raise SystemExit(f"{path} holds {len(sets)} query sets, {n} asked for")
    return sets[:n]


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


PEAK_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def matmul_peak(dtype: torch.dtype, n: int = 1536, reps: int = 10, device: str = "cpu", rounds: int = 5) -> float:
    """The best of `rounds` timings: on a shared machine a single timing can catch a neighbour's
    load and understate the peak, which would overstate utilisation."""
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(rounds):
        sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start))
    return best


def random_weights_dir(model: str, dtype: torch.dtype) -> str:
    """A model dir with `model`'s config and tokenizer files and random weights (seed 0), saved in dtype.

    Speed does not depend on the weight values, so this lets a GPU machine time the architecture
    without carrying the checkpoint; the label probabilities it produces mean nothing."""
    from transformers import AutoConfig, AutoModelForCausalLM

    src = Path(resolve_model_path(model))
    config = AutoConfig.from_pretrained(src)
    torch.manual_seed(0)
    net = AutoModelForCausalLM.from_config(config).to(dtype)
    dst = Path(tempfile.mkdtemp(prefix="lref-random-weights-"))
    net.save_pretrained(dst)
    for f in src.iterdir():
        if f.is_file() and f.name != "config.json" and f.suffix not in (".safetensors", ".bin", ".gguf"):
            shutil.copy(f, dst / f.name)
    return str(dst)


def model_flops(model, sequences: list[tuple[int, int]]) -> float:
    """Useful FLOPs for (cached_prefix_len, new_tokens) sequences: 2*params per token for the
    linear layers plus attention over the visible context; the label head is negligible."""
    cfg = model.config
    linear = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "embed" not in n and "lm_head" not in n)
    attn_width = cfg.num_attention_heads * getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
    total = 0.0
    for past, new in sequences:
        context = sum(range(past + 1, past + new + 1))  # keys each new token attends to
        total += 2 * linear * new + 4 * cfg.num_hidden_layers * attn_width * context
    return total


def load_judge(judge: str, model: str, dtype: str, device: str) -> tuple[object, PromptFormat, str]:
    """-> (model, prompt, device). 'zero-shot': `model` with the default instruction; 'shipped' or a
    judge dir: the judge as `lref serve --judge` loads it (adapter merged, the card's prompt)."""
    if judge == "zero-shot":
        net, tokenizer, where = load_model(ModelSpec(model=model, dtype=dtype, device=device))
        return net, PromptFormat(tokenizer, load_scheme()), where
    from reranker.api import build_config

    config = build_config(None if judge == "shipped" else judge, None, None, dtype, device, "transformers",
                          None, None, None, None, "expected")
    served = build_backend(config)
    return served.model, served.prompt, served.device


def cpu_line(extra: str = "") -> str:
    """The CPU facts every benchmark prints: what decides `--dtype auto` there."""
    return f"CPU: {cpu_summary()}; {extra}torch {torch.__version__}"


def naive_scores(model, prompt: PromptFormat, query: str, titles: list[str]) -> torch.Tensor:
    rows = []
    for title in titles:
        ids = torch.tensor([prompt.encode(query, title).prompt_ids], device=model.device)
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=1, do_sample=False,
                             output_scores=True, return_dict_in_generate=True, pad_token_id=prompt.eos_token_id)
        rows.append(label_probs_from_logits(out.scores[0], prompt.label_token_ids)[0])
    return torch.stack(rows).cpu()


class Timing(NamedTuple):
    latencies: list[float]  # every timed run (runs x repeats)
    outputs: list[torch.Tensor]  # one per run
    fastest: list[float]  # each run's fastest latency
    probes: list[float]  # what `probe` returned right after each run (e.g. the matmul peak there and then)


def timed(fn, runs: list[tuple[str, list[str]]], desc: str, device: str = "cpu",
          warmup: int | str = 1, repeats: int = 1, probe=None) -> Timing:
    """warmup: untimed requests first (cycling through runs), or "all": each timed request once."""
    out = Timing([], [], [], [])
    for i in range(len(runs) if warmup == "all" else int(warmup)):
        fn(*runs[i % len(runs)])
    for query, titles in tqdm(runs, desc=desc, leave=False):
        mine = []
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            result = fn(query, titles)
            sync(device)
            mine.append(time.perf_counter() - start)
        out.outputs.append(result)
        out.latencies.extend(mine)
        out.fastest.append(min(mine))
        if probe is not None:
            out.probes.append(probe())
    return out


def request_flops(model, prompt: PromptFormat, query: str, titles: list[str]) -> float:
    """Useful FLOPs of one request under prefix reuse: the query's own prefix tokens once (the
    constant template head stays cached across requests), then each product after the prefix."""
    head, q_len = len(prompt.head_ids), len(prompt.query_ids(query))
    return model_flops(model, [(head, q_len - head)] + [(q_len, len(prompt.doc_ids(t))) for t in titles])


def profile_call(fn, device: str, path: Path, title: str) -> dict:
    """torch.profiler over one call: the top-15 table by device time, and how busy the GPU was."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if str(device).startswith("cuda") else [])
    sync(device)
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        fn()
        sync(device)
    wall = time.perf_counter() - start
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    spans = sorted((e.time_range.start, e.time_range.end) for e in kernels)
    busy, end = 0.0, float("-inf")
    for a, b in spans:  # union of kernel intervals, in us
        if b > end:
            busy += b - max(a, end)
            end = b
    launches = sum(1 for e in prof.events() if e.name in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"))
    first = spans[0][0] if spans else 0.0
    last = max((b for _, b in spans), default=0.0)
    summary = {
        "wall_s_profiled": wall, "kernels": len(kernels), "launch_calls": launches,
        "gpu_busy_s": busy / 1e6, "gpu_span_s": (last - first) / 1e6,
    }
    sort = "self_device_time_total" if kernels else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=15, max_name_column_width=60)
    path.write_text(f"{title}\n{json.dumps(summary, indent=1)}\n\n{table}\n")
    return summary


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=8)
    ap.add_argument("--naive-queries", type=int, default=2)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    ap.add_argument("--model", default="default", help="as ModelSpec.model: 'default', a local HF dir, ...")
    ap.add_argument("--judge", default="zero-shot",
                    help="zero-shot (--model with the default instruction), shipped (the judge `lref serve` uses "
                         "by default: adapter merged, the card's compact prompt), or a judge dir")
    ap.add_argument("--repeats", type=int, default=1,
                    help="time each request of (b) this many times; utilisation is also given at the median "
                         "of each request's fastest run (a busy neighbour slows single timings on shared machines)")
    ap.add_argument("--random-weights", action="store_true",
                    help="time --model's architecture with random weights (speed only; labels are meaningless)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--warmup", default="1",
                    help="untimed requests before each timed method, or 'all' (every timed request once first: "
                         "steady state, with every batch shape already seen)")
    ap.add_argument("--no-cudnn-attention", action="store_true",
                    help="keep torch's SDPA off its cuDNN backend (it then picks memory-efficient attention)")
    ap.add_argument("--max-batch-tokens", default="",
                    help="token budget of (b) and (c) (default: the device's default); more comma-separated "
                         "budgets add (b) and (c) rows")
    ap.add_argument("--throughput-queries", type=int, default=0,
                    help="also time N queries x 50 products in one label_probs call (0 = skip)")
    ap.add_argument("--throughput-batch-tokens", default="16384,65536")
    ap.add_argument("--throughput-batch-size", type=int, default=1024)
    ap.add_argument("--throughput-reps", type=int, default=3)
    ap.add_argument("--queries-file", help="read query sets written by --dump-queries instead of the data dir")
    ap.add_argument("--dump-queries", metavar="PATH", help="write max(--queries, --throughput-queries) query sets and exit")
    ap.add_argument("--profile-dir", help="write torch.profiler tables of one (b) request and one throughput call here")
    ap.add_argument("--json-out", help="also write the results as JSON here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.no_cudnn_attention:
        torch.backends.cuda.enable_cudnn_sdp(False)
    n_sets = max(args.queries, args.throughput_queries)
    if args.dump_queries:
        Path(args.dump_queries).write_text(json.dumps(load_queries(n_sets)))
        print(f"wrote {n_sets} query sets to {args.dump_queries}")
        return

    model_path = args.model
    if args.random_weights:
        model_path = random_weights_dir(args.model, pick_dtype(args.dtype, pick_device(args.device)))
    model, prompt, device = load_judge(args.judge, model_path, args.dtype, args.device)
    cuda = str(device).startswith("cuda")
    budgets = [int(b) for b in args.max_batch_tokens.split(",")] if args.max_batch_tokens else [
        default_batch_tokens(device, model.dtype)]
    ours = TransformersBackend(model, prompt, device=device, max_batch_tokens=budgets[0])
    plain = TransformersBackend(model, prompt, device=device, max_batch_tokens=budgets[0], prefix_reuse=False)
    if args.queries_file:
        all_sets = read_queries(args.queries_file, n_sets)
    else:
        all_sets = load_queries(args.queries) if n_sets == args.queries else load_queries(n_sets)
    runs = all_sets[: args.queries]
    peak_kw = {"n": 8192, "reps": 20, "device": device} if cuda else {}
    peaks = {name: matmul_peak(dtype, **peak_kw) for name, dtype in PEAK_DTYPES.items()}

    rows = []
    tw = {"device": device, "warmup": args.warmup if args.warmup == "all" else int(args.warmup)}
    with torch.inference_mode():
        lat_a, out_a, _, _ = timed(lambda q, t: naive_scores(model, prompt, q, t), runs[: args.naive_queries], "naive", **tw)
        rows.append(("(a) naive generate per pair", lat_a))
        # the matmul peak of the model's dtype is also sampled right after each (b) request: on a
        # shared machine it drifts by ~10% within a minute, and a request is best compared with
        # the peak of its own moment
        local_peak = None if cuda else (lambda: matmul_peak(model.dtype, rounds=3))
        ours_t = timed(lambda q, t: ours.label_probs([ScoreJob(q, t)])[0], runs, "ours", **tw, repeats=args.repeats,
                  probe=local_peak)
        lat_b, out_b = ours_t.latencies, ours_t.outputs
        rows.append(("(b) ours", lat_b))
        lat_c, out_c, _, _ = timed(lambda q, t: plain.label_probs([ScoreJob(q, t)])[0], runs, "ours, no prefix reuse", **tw)
        rows.append(("(c) ours without prefix reuse", lat_c))
        for budget in budgets[1:]:
            for tag, reuse in (("(b) ours", True), ("(c) without prefix reuse", False)):
                other = TransformersBackend(model, prompt, device=device, max_batch_tokens=budget, prefix_reuse=reuse)
                lat = timed(lambda q, t: other.label_probs([ScoreJob(q, t)])[0], runs, f"{tag} @{budget}", **tw,
                            repeats=args.repeats).latencies
                rows.append((f"{tag}, max_batch_tokens={budget}", lat))

    # FLOP utilisation of (b), from the real token counts of one request; the peaks are measured
    # again after the timed runs: the peak is the best seen before or after them
    peaks = {name: max(peak, matmul_peak(PEAK_DTYPES[name], **peak_kw)) for name, peak in peaks.items()}
    query, titles = runs[0]
    flops_per_request = request_flops(model, prompt, query, titles)
    achieved = flops_per_request / statistics.median(lat_b)
    # every request's own FLOPs over its fastest run, against the peak sampled right after it
    own_flops = [request_flops(model, prompt, q, t) for q, t in runs]
    achieved_best = sum(own_flops) / sum(ours_t.fastest)
    local_util = [f / t / p for f, t, p in zip(own_flops, ours_t.fastest, ours_t.probes)]

    drift = max((a - b).abs().max().item() for a, b in zip(out_a, out_b))
    drift_c = max((b - c).abs().max().item() for b, c in zip(out_b, out_c))

    where = f"{torch.cuda.get_device_name(device)}" if cuda else f"{device}, {torch.get_num_threads()} threads"
    table = Table(title=f"Rerank {N_PRODUCTS} Home Depot products for one query — {model.dtype}, {where}, "
                         f"{budgets[0]} tokens per forward pass")

    for col in ("method", "requests", "pairs/s", "p50 ms", "p95 ms", "speed-up vs (a)"):
        table.add_column(col, justify="right" if col != "method" else "left")
    base = N_PRODUCTS / statistics.mean(lat_a)
    results = {"device": where, "dtype": str(model.dtype), "cpu": cpu_facts(), "torch": torch.__version__,
               "transformers": __import__("transformers").__version__, "random_weights": args.random_weights,
               "attn_implementation": getattr(model.config, "_attn_implementation", None),
               "cudnn_sdpa": torch.backends.cuda.cudnn_sdp_enabled(), "warmup": args.warmup,
               "peaks_flops": peaks, "rows": []}
    for name, lat in rows:
        pps = N_PRODUCTS / statistics.mean(lat)
        table.add_row(name, str(len(lat)), f"{pps:.1f}", f"{pct(lat, 50) * 1e3:.0f}", f"{pct(lat, 95) * 1e3:.0f}",
                      f"{pps / base:.1f}x")
        results["rows"].append({"method": name, "requests": len(lat), "pairs_per_s": pps, "p50_ms": pct(lat, 50) * 1e3,
                                "p95_ms": pct(lat, 95) * 1e3, "speedup": pps / base, "latencies_s": lat})
    console = Console(width=140)
    console.print(table)
    console.print(cpu_line(f"--dtype {args.dtype} -> {model.dtype}; "))  # what decided --dtype auto on a CPU
    console.print(f"(b) useful FLOPs/request {flops_per_request / 1e9:.1f} GFLOP, achieved {achieved / 1e9:.1f} GFLOP/s")
    for name, peak in peaks.items():
        console.print(f"matmul peak {name}: {peak / 1e9:.1f} GFLOP/s -> (b) utilisation {achieved / peak:.0%} of {name} peak")
    key = "bf16" if model.dtype in (torch.bfloat16, torch.float16) else "fp32"
    console.print(f"(b) each request's own FLOPs over its fastest of {args.repeats} run(s): {achieved_best / 1e9:.1f} "
                  f"GFLOP/s -> utilisation {achieved_best / peaks[key]:.0%} of the {key} peak above")
    if local_util:
        console.print(f"(b) against the {key} peak sampled right after each request "
                      f"({min(ours_t.probes) / 1e9:.0f}-{max(ours_t.probes) / 1e9:.0f} GFLOP/s): utilisation median "
                      f"{statistics.median(local_util):.0%}, range {min(local_util):.0%}-{max(local_util):.0%}")
    fused = not cuda and model.dtype in shared_prefix.FUSED_CPU_DTYPES and shared_prefix._CPU_FLASH is not None
    kernel = "PyTorch's fused CPU kernel" if fused else "matmuls"
    console.print(f"shared-prefix attention in {kernel}; judge: {args.judge}, prefix of query 1: "
                  f"{len(prompt.query_ids(query))} tokens")
    console.print(f"max |P(a) - P(b)| = {drift:.2e}; max |P(b) - P(c)| = {drift_c:.2e}")
    if cuda:
        console.print(f"attention: {results['attn_implementation']}, cuDNN SDPA enabled: {results['cudnn_sdpa']}; "
                      f"warm-up: {args.warmup}; torch {torch.__version__}, transformers {results['transformers']}"
                      + (" (random weights)" if args.random_weights else ""))
    results.update(flops_per_request=flops_per_request, achieved_flops=achieved, achieved_flops_fastest=achieved_best,
                   repeats=args.repeats, local_peaks=ours_t.probes, local_utilisation=local_util, judge=args.judge, attention=kernel, drift_ab=drift, drift_bc=drift_c)
    if cuda:
        extra = [(name, flops_per_request / statistics.median(lat))
                 for name, lat in rows[1:] if not name.startswith("(c)")]
        for name, rate in extra:
            console.print(f"{name}: {rate / 1e12:.2f} TFLOP/s = {rate / peaks['bf16']:.2%} of the bf16 peak")

    if args.throughput_queries:
        sets = all_sets[: args.throughput_queries]
        jobs = [ScoreJob(q, t) for q, t in sets]
        flops = sum(request_flops(model, prompt, q, t) for q, t in sets)
        n_pairs = sum(len(t) for _, t in sets)
        tp = Table(title=f"Throughput: {len(sets)} queries x {N_PRODUCTS} products in one label_probs call "
                         f"({flops / 1e12:.2f} useful TFLOP per call)")
        key = "bf16" if model.dtype in (torch.bfloat16, torch.float16) else "fp32"  # the peak of the dtype it runs in
        for col in ("method", "max_batch_tokens", "calls", "median s", "pairs/s", "TFLOP/s", f"% of {key} peak"):
            tp.add_column(col, justify="right" if col != "method" else "left")
        tbudgets = [int(b) for b in args.throughput_batch_tokens.split(",")]
        configs = [("(b) ours", b, True) for b in tbudgets] + [("(c) no prefix reuse", tbudgets[-1], False)]
        results["throughput"] = []
        with torch.inference_mode():
            for name, budget, reuse in configs:
                backend = TransformersBackend(model, prompt, device=device, max_batch_tokens=budget,
                                              max_batch_size=args.throughput_batch_size, prefix_reuse=reuse)
                backend.label_probs(jobs)  # warm-up
                times = []
                for _ in range(args.throughput_reps):
                    sync(device)
                    start = time.perf_counter()
                    backend.label_probs(jobs)
                    sync(device)
                    times.append(time.perf_counter() - start)
                med = statistics.median(times)
                # (c)'s useful FLOPs are counted as (b)'s: the recomputed prefixes are not useful work
                tp.add_row(name, str(budget), str(len(times)), f"{med:.3f}", f"{n_pairs / med:.0f}",
                           f"{flops / med / 1e12:.2f}", f"{flops / med / peaks[key]:.1%}")
                results["throughput"].append({"method": name, "max_batch_tokens": budget, "times_s": times,
                                              "pairs_per_s": n_pairs / med, "flops": flops,
                                              f"util_{key}": flops / med / peaks[key]})
        console.print(tp)

    if args.profile_dir:
        out = Path(args.profile_dir)
        out.mkdir(parents=True, exist_ok=True)
        with torch.inference_mode():
            for budget in budgets:  # the first query's shapes were seen while timing, so this is steady state
                one = TransformersBackend(model, prompt, device=device, max_batch_tokens=budget)
                results[f"profile_b_{budget}"] = profile_call(
                    lambda: one.label_probs([ScoreJob(query, titles)]), device, out / f"profile_b_{budget}.txt",
                    f"(b) one request, 50 products, max_batch_tokens={budget}")
            if args.throughput_queries:
                best = min((t for t in results["throughput"] if t["method"].startswith("(b)")),
                           key=lambda t: statistics.median(t["times_s"]))["max_batch_tokens"]
                big = TransformersBackend(model, prompt, device=device, max_batch_tokens=best,
                                          max_batch_size=args.throughput_batch_size)
                results["profile_throughput"] = profile_call(
                    lambda: big.label_probs(jobs), device, out / "profile_throughput.txt",
                    f"(b) {len(jobs)} queries x 50 products, max_batch_tokens={best} (the fastest above)")
        console.print(f"profiles: {json.dumps({k: v for k, v in results.items() if k.startswith('profile')})}")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
