"""The soak child: `python -m objectives.soak_child SPEC.json RESULT.json`.

One long Desktop-Mate conversation in one process, the way the app holds its model for hours:
the app's prompt format, sampling settings and warm-up, one reply after another. The history
sent is either the app's own (the last `history_turns` interactions: `"fit": null`) or the one
tuner.history_fit.fit_history keeps (`"fit": {"max_tokens": ..., "block": ...}`). It records
every turn's prompt size and first-token latency, and memory at the checkpoint messages so the
parent can spot growth (a leak) that a single-answer trial never shows. A prompt whose reply
can't fit `n_ctx` ends the conversation there: the app would fail on it and, its history being
persisted, on every later message. Spawned and watched like the trial child
(objectives.launch.ColdLauncher): a crash or a hang can't take the caller down.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from objectives import phases
from objectives.llama_log import FAILURE_TAIL_CHARS, LogCapture, looks_oom
from objectives.llama_params import to_llama_kwargs
from objectives.nvml import process_vram_mb
from objectives.phases import phase
from tuner.history_fit import fit_history

# What a user says to Kira over an evening; cycled. Varied lengths, as in a real chat.
USER_MESSAGES = (
    "Salut Kira, tu es là ?",
    "J'ai besoin d'aide pour organiser ma journée de demain, j'ai beaucoup de choses à faire.",
    "Tu peux me rappeler de boire de l'eau toutes les heures ?",
    "Quel temps fait-il d'habitude à Lyon en novembre ?",
    "Je n'arrive pas à me concentrer sur mon code, tu as une astuce ?",
    "Raconte-moi une blague, j'en ai besoin.",
    "C'est quoi la différence entre une liste et un tuple en Python ?",
    "Mon chat vient de renverser mon café sur le clavier...",
    "Tu penses que je devrais apprendre Rust ou Go en premier ?",
    "Merci, tu es vraiment adorable.",
    "Propose-moi une idée de dîner rapide avec des pâtes et des légumes.",
    "J'ai un entretien d'embauche vendredi, je suis un peu stressé.",
    "Tu peux résumer ce qu'on s'est dit depuis tout à l'heure ?",
    "Quelle musique tu me conseilles pour travailler ?",
    "Je vais faire une pause, à tout à l'heure !",
    "Me revoilà. Où en étions-nous ?",
    "Explique-moi simplement ce qu'est un modèle de langage.",
    "Tu connais des exercices pour le dos quand on reste assis toute la journée ?",
    "Bon, il est tard, je vais bientôt aller dormir.",
    "Bonne nuit Kira, merci pour la soirée !",
)


@dataclass(frozen=True)
class SoakSpec:
    """One conversation (tuner.profile.soak builds it): the model and its Llama(...) keys, the
    app's chat (template, system prompt, sampling), and how the history is kept (`fit`)."""

    model_path: str
    params: dict[str, Any]
    chat: dict[str, Any]
    messages: int
    reply_tokens: int
    long_replies: bool
    history_turns: int
    fit: dict[str, int] | None
    checkpoints: tuple[int, ...]

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path,
            "params": self.params,
            "chat": self.chat,
            "messages": self.messages,
            "reply_tokens": self.reply_tokens,
            "long_replies": self.long_replies,
            "history_turns": self.history_turns,
            "fit": self.fit,
            "checkpoints": list(self.checkpoints),
        }


def rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def render(t: dict[str, str], system: str, turns: Sequence[Sequence[str]], message: str) -> str:
    """The app's prompt (objectives.workload.Workload.render, from the spec's plain dicts)."""
    parts = [t["system"].format(text=system)]
    for user, reply in turns:
        parts.append(t["user"].format(text=user))
        parts.append(t["assistant"].format(text=reply))
    parts.append(t["user"].format(text=message))
    return "".join(parts) + t["generation_prefix"]


def count_tokens(llm: Any, text: str) -> int:
    """Tokens of a prompt as llama-cpp-python's completion counts them (BOS, special tags)."""
    return len(llm.tokenize(text.encode("utf-8"), special=True))


def context_parts(llm: Any, chat: dict[str, Any]) -> dict[str, int]:
    """Token counts the parent needs for the worst-case prompt (pieces tokenized apart: a
    bound within a few tokens, since tokens can merge across the tags)."""
    t = chat["template"]

    def count(text: str, bos: bool = False) -> int:
        return len(llm.tokenize(text.encode("utf-8"), add_bos=bos, special=True))

    users = [*USER_MESSAGES, *(u for u, _ in chat["history"])]
    return {
        "system_tokens": count(t["system"].format(text=chat["system_prompt"]), bos=True),
        "user_tokens_max": max(count(t["user"].format(text=u)) for u in users),
        "assistant_tag_tokens": count(t["assistant"].format(text="")),
        "generation_prefix_tokens": count(t["generation_prefix"]),
    }


def long_reply_bias(llm: Any, stop: Sequence[str]) -> dict[int, float]:
    """Logit biases that make every reply run to its max_tokens: no end-of-generation token,
    and no token holding the first character of a stop string, so none can complete (the app's
    stop strings stay in the call). Replies of a known length fill n_ctx deterministically."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    firsts = {s[0].encode("utf-8") for s in stop if s}
    banned = float("-inf")
    bias: dict[int, float] = {}
    for tok in range(int(llm.n_vocab())):
        piece = llm.detokenize([tok])
        if llama_cpp.llama_vocab_is_eog(vocab, tok) or any(c in piece for c in firsts):
            bias[tok] = banned
    return bias


def _reply(
    llm: Any, prompt: str, spec: dict[str, Any], bias: dict[int, float] | None
) -> tuple[str, float, float]:
    """The app's call (plain completion, its sampling and stop strings), streamed to time the
    first token; max_tokens is the soak's reply cap. Returns text, first-token s, total s."""
    chat = spec["chat"]
    t0 = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    stream = llm(
        prompt,
        temperature=chat["temperature"],
        top_p=chat["top_p"],
        max_tokens=spec["reply_tokens"],
        stop=chat["stop"],
        echo=False,
        stream=True,
        logit_bias=bias,
    )
    for chunk in stream:
        if first is None:
            first = time.perf_counter()
        parts.append(chunk["choices"][0]["text"])
    end = time.perf_counter()
    return "".join(parts).strip(), (first or end) - t0, end - t0


def window(
    history: list[tuple[str, str]], spec: dict[str, Any], prompt_for: Any, count: Any, n_ctx: int
) -> list[tuple[str, str]]:
    """The interactions sent with the next message: the app's last `history_turns`, or, with
    `fit`, what fit_history keeps of the last 2 x history_turns (what the app would fetch)."""
    turns = int(spec["history_turns"])
    fit = spec["fit"]
    if fit is None:
        return history[max(len(history) - turns, 0) :] if turns > 0 else []
    recent = history[max(len(history) - 2 * turns, 0) :]
    return fit_history(
        recent,
        prompt_for,
        count,
        n_ctx=n_ctx,
        max_tokens=int(fit["max_tokens"]),
        max_turns=turns,
        block=int(fit["block"]),
        first_index=len(history) - len(recent),
    )


def overflow(n_prompt: int, n_ctx: int, spec: dict[str, Any]) -> str:
    """Why this prompt breaks the app ("" when it fits). Without the helper: the soak's reply
    doesn't fit (llama-cpp-python refuses the prompt, or cuts the reply). With it: not even
    the prompt without history leaves room for a max_tokens reply."""
    fit = spec["fit"]
    if fit is not None:
        need = int(fit["max_tokens"])
        if n_prompt + need <= n_ctx:
            return ""
        return (
            f"even without history, the prompt's {n_prompt} tokens + max_tokens {need} "
            f"exceed n_ctx {n_ctx}"
        )
    reply = int(spec["reply_tokens"])
    if n_prompt >= n_ctx:
        return (
            f'prompt of {n_prompt} tokens: llama-cpp-python raises "Requested tokens '
            f'({n_prompt}) exceed context window of {n_ctx}"'
        )
    if n_prompt + reply > n_ctx:
        return (
            f"prompt of {n_prompt} tokens + a {reply}-token reply exceed n_ctx {n_ctx}: "
            f"llama-cpp-python cuts the reply to {n_ctx - n_prompt} tokens"
        )
    return ""


def _after_load(llm: Any, chat: dict[str, Any], n_ctx: int) -> dict[str, Any]:
    """The soak's result as it starts: memory after the load, no message sent yet."""
    return {
        "n_ctx": n_ctx,
        "rss_after_load_mb": rss_mb(),
        "vram_after_load_mb": process_vram_mb(os.getpid()),
        "parts": context_parts(llm, chat),
        "checkpoints": [],
        "turns": [],
        "max_prompt_tokens": 0,
        "messages_done": 0,
        "overflow": None,
    }


def _checkpoint(i: int, turn: dict[str, Any], first_s: float, total_s: float) -> dict[str, Any]:
    """Memory and timings after message i (one of the spec's checkpoints)."""
    return {
        "message": i,
        "rss_mb": rss_mb(),
        "vram_mb": process_vram_mb(os.getpid()),
        "ttft_ms": first_s * 1000.0,
        "answer_s": total_s,
        "prompt_tokens": turn["prompt_tokens"],
        "reply_tokens": turn["reply_tokens"],
    }


def soak(llm: Any, spec: dict[str, Any]) -> dict[str, Any]:
    chat = spec["chat"]
    n_ctx = int(llm.n_ctx())
    history: list[tuple[str, str]] = [(u, a) for u, a in chat["history"]]  # all, as persisted
    checkpoints = set(spec["checkpoints"])
    out = _after_load(llm, chat, n_ctx)
    bias = long_reply_bias(llm, chat["stop"]) if spec["long_replies"] else None
    llm("Bonjour", max_tokens=2)  # the app's warm-up after its load
    llm.set_seed(int(chat["seed"]))

    def count(text: str) -> int:
        return count_tokens(llm, text)

    for i in range(1, spec["messages"] + 1):
        message = USER_MESSAGES[(i - 1) % len(USER_MESSAGES)]

        def prompt_for(turns: Sequence[Sequence[str]], message: str = message) -> str:
            return render(chat["template"], chat["system_prompt"], turns, message)

        kept = window(history, spec, prompt_for, count, n_ctx)
        prompt = prompt_for(kept)
        n_prompt = count(prompt)
        out["max_prompt_tokens"] = max(out["max_prompt_tokens"], n_prompt)
        why = overflow(n_prompt, n_ctx, spec)
        if why:
            # The app fails here and, its history being persisted, on every later message.
            out["overflow"] = {"message": i, "why": why}
            break
        steady = len(history) >= spec["history_turns"]  # the app's window is full
        phase(phases.message(i))
        reply, first_s, total_s = _reply(llm, prompt, spec, bias)
        history.append((message, reply))
        out["messages_done"] = i
        out["turns"].append(
            {
                "message": i,
                "kept": len(kept),
                "prompt_tokens": n_prompt,
                "reply_tokens": len(llm.tokenize(reply.encode("utf-8"), add_bos=False)),
                "ttft_ms": first_s * 1000.0,
                "steady": steady,
            }
        )
        if i in checkpoints:
            out["checkpoints"].append(_checkpoint(i, out["turns"][-1], first_s, total_s))
    return out


def run(spec: dict[str, Any]) -> dict[str, Any]:
    phase(phases.IMPORT)
    import llama_cpp

    log = LogCapture()
    log.install()
    phase(phases.LOAD)
    try:
        llm = llama_cpp.Llama(
            model_path=spec["model_path"], **to_llama_kwargs(spec["params"]), verbose=False
        )
        return {"ok": True, **soak(llm, spec)}
    except Exception as exc:
        text = f"{exc}\n{log.text()[-FAILURE_TAIL_CHARS:]}"
        kind = "oom" if looks_oom(text) else "exception"
        return {"ok": False, "kind": kind, "error": f"{type(exc).__name__}: {exc}", "log": text}


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    result = run(spec)
    tmp = Path(argv[1]).with_suffix(".tmp")
    tmp.write_text(json.dumps(result), encoding="utf-8")
    os.replace(tmp, argv[1])
    phase(phases.DONE)
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    import faulthandler

    faulthandler.enable()
    sys.exit(main(sys.argv[1:]))
