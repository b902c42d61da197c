"""Sentence alignment throughput: words per second on 1,500 / 3,000 / 6,000 and 12,000-word transcripts.

Prints the split (pysbd's sentence splitting vs emoflow's character-offset alignment)
and the time ratio between sizes: a linear algorithm doubles when the input doubles.
For comparison it runs the user's design-document method (quadratic ``endswith`` loop)
on the same words at the smaller sizes.

    python benchmarks/bench_alignment.py
"""

from __future__ import annotations

import platform
import random
import time

from emoflow.text.sentences import SentenceSegmenter, align_sentences, split_text
from emoflow.types import TimeSpan, Transcript, Word, join_words

VOCAB = [
    "i",
    "think",
    "we",
    "should",
    "go",
    "there",
    "tomorrow",
    "because",
    "the",
    "weather",
    "will",
    "be",
    "fine",
    "and",
    "everyone",
    "wants",
    "to",
    "see",
    "dr.",
    "smith",
    "who",
    "paid",
    "$3.5",
    "million",
    "for",
    "the",
    "house",
]


def make_words(n: int, seed: int = 0) -> list[Word]:
    rng = random.Random(seed)
    words, t = [], 0.0
    for i in range(n):
        text = rng.choice(VOCAB)
        if i % 12 == 11:
            text += rng.choice([".", "!", "?"])
        words.append(Word(text.capitalize() if i % 12 == 0 else text, TimeSpan(t, t + 0.25)))
        t += 0.3
    return words


def design_document_method(words: list[Word], sentences: list[str]) -> int:
    """The seed's loop (with its crash past the last sentence guarded), for timing only."""
    idx, cur, found = 0, [], 0
    for w in words:
        cur.append(w.text)
        rec = " ".join(cur)
        if idx < len(sentences) and any(sentences[idx].strip().endswith(rec.strip()) for _ in sentences):
            found += 1
            idx += 1
            cur = []
    return found


def best_of(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}")
    seg = SentenceSegmenter()
    rows = {}
    for n in (1500, 3000, 6000, 12000):
        words = make_words(n)
        text = join_words(words)
        sents = split_text(text)
        t_split = best_of(lambda text=text: split_text(text))
        t_align = best_of(lambda words=words, sents=sents: align_sentences(words, sents))
        t_total = best_of(lambda words=words: seg(Transcript(tuple(words))))
        rows[n] = (t_split, t_align, t_total)
        print(
            f"{n:5d} words: total {t_total * 1000:8.1f} ms = {n / t_total:9.0f} words/s | "
            f"pysbd split {t_split * 1000:7.1f} ms | alignment {t_align * 1000:6.2f} ms "
            f"({n / t_align:,.0f} words/s) | {len(sents)} sentences"
        )
    for a, b in ((1500, 3000), (3000, 6000), (6000, 12000)):
        print(
            f"time ratio {b}/{a} words: total {rows[b][2] / rows[a][2]:.2f}, "
            f"alignment {rows[b][1] / rows[a][1]:.2f} (linear = 2.0)"
        )
    for n in (750, 1500):
        words = make_words(n)
        sents = split_text(join_words(words))
        t_seed = best_of(lambda words=words, sents=sents: design_document_method(words, sents), repeat=1)
        t_ours = best_of(lambda words=words, sents=sents: align_sentences(words, sents))
        print(
            f"design-document loop, {n} words: {t_seed * 1000:.1f} ms vs ours {t_ours * 1000:.2f} ms "
            f"({t_seed / t_ours:.0f}x)"
        )


if __name__ == "__main__":
    main()
