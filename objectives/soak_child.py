"""The soak child: `python -m objectives.soak_child SPEC.json RESULT.json`.

One long Desktop-Mate conversation in one process, the way the app holds its model for hours:
the app's prompt format and sampling settings, a rolling history of the last turns, one reply
after another. It records memory and latency at the checkpoint messages so the parent can spot
growth (a leak) that a single-answer trial never shows. Spawned and watched like the trial
child (objectives.runner.run_child): a crash or a hang can't take the caller down.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from objectives.llama_log import LogCapture, looks_oom
from objectives.llama_params import to_llama_kwargs
from objectives.measure import phase
from objectives.nvml import process_vram_mb

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


def rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def _prompt(t: dict[str, str], system: str, history: deque[tuple[str, str]], message: str) -> str:
    parts = [t["system"].format(text=system)]
    for user, reply in history:
        parts.append(t["user"].format(text=user))
        parts.append(t["assistant"].format(text=reply))
    parts.append(t["user"].format(text=message))
    return "".join(parts) + t["generation_prefix"]


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


def _reply(llm: Any, prompt: str, spec: dict[str, Any]) -> tuple[str, float, float]:
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
    )
    for chunk in stream:
        if first is None:
            first = time.perf_counter()
        parts.append(chunk["choices"][0]["text"])
    end = time.perf_counter()
    return "".join(parts).strip(), (first or end) - t0, end - t0


def soak(llm: Any, spec: dict[str, Any]) -> dict[str, Any]:
    chat = spec["chat"]
    n_ctx = int(llm.n_ctx())
    history: deque[tuple[str, str]] = deque(
        (tuple(turn) for turn in chat["history"]), maxlen=spec["history_turns"]
    )
    checkpoints = set(spec["checkpoints"])
    llm.set_seed(int(chat["seed"]))
    out: dict[str, Any] = {
        "n_ctx": n_ctx,
        "rss_after_load_mb": rss_mb(),
        "vram_after_load_mb": process_vram_mb(os.getpid()),
        "parts": context_parts(llm, chat),
        "checkpoints": [],
        "max_prompt_tokens": 0,
        "messages_done": 0,
        "stopped": "",
    }
    for i in range(1, spec["messages"] + 1):
        message = USER_MESSAGES[(i - 1) % len(USER_MESSAGES)]
        prompt = _prompt(chat["template"], chat["system_prompt"], history, message)
        n_prompt = len(llm.tokenize(prompt.encode("utf-8"), special=True))
        out["max_prompt_tokens"] = max(out["max_prompt_tokens"], n_prompt)
        if n_prompt + spec["reply_tokens"] > n_ctx:
            # llama-cpp-python would cut the reply short or refuse the prompt: the app breaks.
            out["stopped"] = (
                f"message {i}: prompt of {n_prompt} tokens + a {spec['reply_tokens']}-token "
                f"reply don't fit n_ctx {n_ctx}"
            )
            break
        phase(f"message {i}")
        reply, first_s, total_s = _reply(llm, prompt, spec)
        history.append((message, reply))
        out["messages_done"] = i
        if i in checkpoints:
            out["checkpoints"].append(
                {
                    "message": i,
                    "rss_mb": rss_mb(),
                    "vram_mb": process_vram_mb(os.getpid()),
                    "ttft_ms": first_s * 1000.0,
                    "answer_s": total_s,
                    "prompt_tokens": n_prompt,
                    "reply_tokens": len(llm.tokenize(reply.encode("utf-8"), add_bos=False)),
                }
            )
    return out


def run(spec: dict[str, Any]) -> dict[str, Any]:
    phase("import")
    import llama_cpp

    log = LogCapture()
    log.install()
    phase("load")
    try:
        llm = llama_cpp.Llama(
            model_path=spec["model_path"], **to_llama_kwargs(spec["params"]), verbose=False
        )
        return {"ok": True, **soak(llm, spec)}
    except Exception as exc:
        text = f"{exc}\n{log.text()[-4000:]}"
        kind = "oom" if looks_oom(text) else "exception"
        return {"ok": False, "kind": kind, "error": f"{type(exc).__name__}: {exc}", "log": text}


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    result = run(spec)
    tmp = Path(argv[1]).with_suffix(".tmp")
    tmp.write_text(json.dumps(result), encoding="utf-8")
    os.replace(tmp, argv[1])
    phase("done")
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    import faulthandler

    faulthandler.enable()
    sys.exit(main(sys.argv[1:]))
