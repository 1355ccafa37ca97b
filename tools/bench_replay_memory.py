#!/usr/bin/env python3
"""R2D2 replay memory on real Pong frames: compressed shared chunks, per step, per checkpoint and in a full replay.

    .venv/bin/python tools/bench_replay_memory.py [--capacity=100000] [--record_steps=20000]

Records ``--record_steps`` real Atari Pong steps (random policy, ``--envs``
environments; single 84x84 frames, the last of each 4-stacked observation),
then, in one run:

- codecs: zstd, lz4 and blosc2 (those installed) on chunks of 40 real frames:
  ratio and compress / decompress speed on one thread;
- (a) bytes per stored step and per sequence of the replay's format (single
  frames, each step once in a zstd chunk, plus the sequence's compressed
  initial state: 3 uint8 frames, LSTM h and c as random float32, the previous
  action);
- (b) checkpoint bytes per sequence: ``torch.save`` of the replay's
  ``state_dict`` with ``--checkpoint_sequences`` sequences, and the time that
  ``state_dict()`` takes on the training thread;
- (c) the RSS of a full replay of ``--capacity`` sequences and the
  time to sample a 64-sequence batch from it. Recording 4M real steps takes too
  long here, so each lineage of sequences walks a real window of the recording
  from its own random start; every chunk is compressed separately and is its
  own object, so the memory is what a replay of that many distinct chunks holds
  (frames repeat across lineages, which does not help compression). It runs
  first, so that heap freed by the other sections does not blur its RSS.
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time

import numpy as np
import torch

from seed_rl.agents.r2d2.replay_data import ReplayData
from seed_rl.core.unroll import UnrollBatch
from seed_rl.replay.chunk_store import ChunkStore
from seed_rl.replay.prioritized import PrioritizedReplay
from benchlib.pong_sequences import CONFIG, LENGTH, OVERLAP, PERIOD, Sequences, record_pong

def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def compare_codecs(frames: np.ndarray, chunks: int) -> None:
    samples = [np.ascontiguousarray(frames[i * PERIOD : (i + 1) * PERIOD]) for i in range(chunks)]
    raw = sum(s.nbytes for s in samples)
    codecs = {}
    try:
        import zstandard

        for level in (1, 3):
            c, d = zstandard.ZstdCompressor(level=level), zstandard.ZstdDecompressor()
            codecs[f"zstd level {level}"] = (lambda a, c=c: c.compress(a.tobytes()), d.decompress)
    except ImportError:
        pass
    try:
        import lz4.frame

        codecs["lz4 frame"] = (lambda a: lz4.frame.compress(a.tobytes()), lz4.frame.decompress)
    except ImportError:
        pass
    try:
        import blosc2

        blosc2.set_nthreads(1)
        for codec in (blosc2.Codec.LZ4, blosc2.Codec.ZSTD):
            codecs[f"blosc2 {codec.name.lower()} clevel 5"] = (
                lambda a, codec=codec: blosc2.compress2(a, codec=codec, clevel=5, typesize=1), blosc2.decompress2)
    except ImportError:
        pass
    print(f"\ncodecs on {chunks} chunks of {PERIOD} real Pong frames ({raw / 1e6:.1f} MB), one thread:")
    print(f"  {'codec':24s} {'ratio':>7s} {'compress':>12s} {'decompress':>12s} {'per chunk':>22s}")
    for name, (compress, decompress) in codecs.items():
        started = time.perf_counter()
        blobs = [compress(s) for s in samples]
        compressing = time.perf_counter() - started
        started = time.perf_counter()
        for blob in blobs:
            decompress(blob)
        decompressing = time.perf_counter() - started
        ratio = raw / sum(len(b) for b in blobs)
        print(f"  {name:24s} {ratio:7.1f} {raw / compressing / 1e6:7.0f} MB/s {raw / decompressing / 1e6:7.0f} MB/s"
              f"   {compressing / chunks * 1e3:5.3f} / {decompressing / chunks * 1e3:5.3f} ms")
    missing = {"lz4", "blosc2"} - {n.split()[0] for n in codecs}
    if missing:
        print(f"  ({', '.join(sorted(missing))} not installed: pip install {' '.join(sorted(missing))} to compare)")


def memory_per_step(source: Sequences, sequences: int) -> None:
    store = ChunkStore(OVERLAP)
    records = [store.add(u) for u in source.lineages(sequences)]
    per_sequence = (store.chunk_bytes + sum(len(r.state) for r in records)) / len(records)
    print(f"\n(a) replay bytes (array payloads) per sequence of {LENGTH} steps and per stored step "
          f"(a sequence adds {PERIOD} new steps), over {len(records)} sequences:")
    print(f"  {per_sequence:,.0f} B per sequence, {per_sequence / PERIOD:,.0f} B per stored step")
    states = sum(len(r.state) for r in records) / len(records)
    print(f"  of which the initial states: {states:,.0f} B per sequence (h and c are float32 noise "
          f"here and barely compress); steps alone {store.chunk_bytes / len(records) / PERIOD:,.1f} B per step")


def checkpoint_bytes(source: Sequences, sequences: int, directory: str) -> None:
    path = os.path.join(directory, "replay.pt")
    data = ReplayData(PrioritizedReplay(sequences), batch_size=64, replay_ratio=1.0, min_size=1,
                      trained_steps_per_sequence=CONFIG.unroll_length, new_steps_per_sequence=PERIOD,
                      sequence_overlap=OVERLAP)
    batch = []
    for u in source.lineages(sequences):
        batch.append(u)
        if len(batch) == 50:
            data.add(UnrollBatch.from_unrolls(batch, torch.device("cpu")))
            batch = []
    if batch:
        data.add(UnrollBatch.from_unrolls(batch, torch.device("cpu")))
    started = time.perf_counter()
    state = data.state_dict()
    snapshot = time.perf_counter() - started
    torch.save(state, path)
    print(f"\n(b) checkpoint bytes per sequence, torch.save of the replay's state_dict with {sequences} sequences:")
    print(f"  {os.path.getsize(path) / sequences:,.0f} B per sequence")
    print(f"  state_dict() on the training thread: {snapshot * 1e3:.1f} ms for {sequences} sequences")


def full_replay(source: Sequences, capacity: int, sample_batches: int, pool_threads: int) -> None:
    gc.collect()
    before = rss_bytes()
    replay = PrioritizedReplay(capacity, CONFIG.priority_exponent, CONFIG.importance_sampling_exponent)
    store = ChunkStore(OVERLAP)
    replay.on_evict = store.release
    started = time.perf_counter()
    pending, priorities = [], source.rng.random(capacity) + 0.1
    for u in source.lineages(capacity):
        pending.append(store.add(u))
        if len(pending) == 256:
            replay.insert(pending, priorities[: len(pending)])
            pending = []
    if pending:
        replay.insert(pending, priorities[: len(pending)])
    filling = time.perf_counter() - started
    gc.collect()
    after = rss_bytes()
    frames = sum(len(r) for r in source.recordings)
    print(f"\n(c) a full replay of {len(replay):,} Pong sequences ({store.live_chunks:,} chunks, "
          f"{store.continued:,} continued, {store.whole:,} whole; filled in {filling:.0f} s)")
    print(f"  fed by {frames:,} distinct real frames from {len(source.recordings)} environments: each lineage "
          "walks a real window of the recording from its own start; every chunk is compressed separately")
    print(f"  RSS before {before / 2**30:.2f} GiB, after {after / 2**30:.2f} GiB, delta {(after - before) / 2**30:.2f} "
          f"GiB = {(after - before) / len(replay):,.0f} B per sequence (target: 1e5 sequences in <= 4 GB)")
    if len(replay) < 64:
        return
    for threads in (0, pool_threads):
        store._threads = threads
        times = []
        for _ in range(sample_batches):
            _, records, _ = replay.sample(64)
            started = time.perf_counter()
            store.gather(records)
            times.append(time.perf_counter() - started)
        label = "on the calling thread" if threads == 0 else f"with {threads} decompression threads"
        print(f"  sample 64 sequences {label}: median {np.median(times) * 1e3:.1f} ms "
              f"(min {np.min(times) * 1e3:.1f}) over {sample_batches} batches")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capacity", type=int, default=100_000, help="sequences in the full replay of (c)")
    parser.add_argument("--record_steps", type=int, default=20_000, help="real Pong steps to record, in all")
    parser.add_argument("--envs", type=int, default=4, help="environments the recording comes from")
    parser.add_argument("--checkpoint_sequences", type=int, default=500)
    parser.add_argument("--codec_chunks", type=int, default=100)
    parser.add_argument("--sample_batches", type=int, default=20)
    parser.add_argument("--threads", type=int, default=4, help="decompression threads to time sampling with")
    parser.add_argument("--dir", default=None, help="where to write the checkpoints (default: a temporary directory)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.record_steps // args.envs < LENGTH + 1000:
        parser.error(f"--record_steps must give each environment at least {LENGTH + 1000} steps")
    torch.set_num_threads(1)
    started = time.perf_counter()
    recordings = record_pong(args.record_steps, args.envs, args.seed)
    print(f"recorded {sum(len(r) for r in recordings):,} real Pong steps from {args.envs} environments "
          f"(random policy) in {time.perf_counter() - started:.0f} s; sequences of {LENGTH} steps, one every {PERIOD}")
    compare_codecs(recordings[0], min(args.codec_chunks, len(recordings[0]) // PERIOD))
    source = Sequences(recordings, args.seed)
    full_replay(source, args.capacity, args.sample_batches, args.threads)
    memory_per_step(source, min(2000, args.capacity))
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        checkpoint_bytes(source, args.checkpoint_sequences, directory)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
