"""Loading a BiLSTM-CRF directory and tagging words with it."""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from tagger.backends.bilstm_crf.features import MAX_SUBWORDS, Vocabulary
from tagger.backends.bilstm_crf.model import BiLstmCrf, NetworkConfig, reverse_index
from tagger.backends.tags import TagSet
from tagger.backends.word_tagger import SpanTuple, WordTagger

logger = logging.getLogger(__name__)

ARCHITECTURE = "bilstm-crf"
# Distinct words whose input projections are kept (x 8H floats: 128 MB at H = 64).
_MAX_CACHED_WORDS = 65_536
CONFIG_NAME = "config.json"
VOCAB_NAME = "vocab.json"
WEIGHTS_NAME = "model.safetensors"
SUBWORD_TOKENIZER_NAME = "subword_tokenizer.json"


class BiLstmCrfTagger(WordTagger):
    # fp32 only: the network is small enough that reduced precision buys nothing on a CPU, and
    # AVX2 CPUs have no bf16 arithmetic.
    PRECISIONS = ("fp32",)
    pause_gc = True

    def __init__(self, network: BiLstmCrf, vocab: Vocabulary, tags: Sequence[str], *, model_name: str,
                 model_version: str, device: str | None = None, precision: str | None = None,
                 max_batch_rows: int = 256, meta: dict | None = None) -> None:
        super().__init__()
        if precision not in (None, "fp32"):
            logger.warning("the BiLSTM-CRF runs in fp32 only; ignoring precision %s", precision)
        if device is not None and torch.device(device).type != "cpu":
            # The CPU tier: a GPU would wait on the per-word loop, and a deployment that sets
            # TAGGER_DEVICE=cuda for its span model keeps working when it switches models.
            logger.warning("the BiLSTM-CRF runs on the CPU; ignoring device %s", device)
        self.device = torch.device("cpu")
        self.precision = "fp32"
        self.network = network.float().eval()
        self.vocab = vocab
        self.tagset = TagSet.from_tags(tags)
        self.model_name = model_name
        self.model_version = model_version
        self.max_batch_rows = max_batch_rows
        self.meta = meta or {}
        with torch.no_grad():
            self._unpack_lstms()
        self._reset_cache()

    @classmethod
    def load(cls, model_dir: str | Path, *, device: str | None = None, precision: str | None = None,
             **kwargs) -> "BiLstmCrfTagger":
        model_dir = Path(model_dir)
        config = json.loads((model_dir / CONFIG_NAME).read_text())
        vocab_data = json.loads((model_dir / VOCAB_NAME).read_text(encoding="utf-8"))
        tags = config["tags"]
        network = BiLstmCrf(NetworkConfig(**config["network"]), tags)
        state = {k: v.float() for k, v in load_file(str(model_dir / WEIGHTS_NAME)).items()}
        network.load_state_dict(state)
        meta = config.get("tweetner", {})
        subword_tokenizer = None
        if network.subwords is not None:
            from tokenizers import Tokenizer

            subword_tokenizer = Tokenizer.from_file(str(model_dir / SUBWORD_TOKENIZER_NAME))
        return cls(network, Vocabulary(vocab_data["words"], vocab_data["chars"], subword_tokenizer), tags,
                   model_name=meta.get("model_name", model_dir.name),
                   model_version=meta.get("model_version", "unversioned"),
                   device=device, precision=precision, meta=meta, **kwargs)

    @property
    def labels(self) -> list[str]:
        return self.tagset.labels

    def tag_words(self, sentences: Sequence[Sequence[str]]) -> list[list[SpanTuple]]:
        out: list[list[SpanTuple]] = [[] for _ in sentences]
        # Longest first: each batch is padded only to its own longest sentence, and at word
        # position t the sentences still running are a prefix of the batch (as in packed
        # sequences), so the recurrence and Viterbi compute real words only.
        order = sorted((i for i, s in enumerate(sentences) if s), key=lambda i: -len(sentences[i]))
        outside = self.tagset.outside
        with torch.inference_mode(), _one_torch_thread():
            for lo in range(0, len(order), self.max_batch_rows):
                started = time.perf_counter()
                rows = order[lo : lo + self.max_batch_rows]
                batch = [sentences[i] for i in rows]
                index, lengths = self._inputs(batch)
                steps = index.shape[1]
                reverse = reverse_index(lengths, steps)
                em = self._emissions(index, reverse, lengths)
                paths = self.network.crf.viterbi(em, lengths)
                # Scores (marginals: a forward-backward pass) only where there is an entity to score.
                tagged = ((paths != outside) & (torch.arange(steps) < lengths[:, None])).any(1).nonzero().squeeze(1)
                if len(tagged):
                    probs = self.network.crf.path_marginals(em[tagged], lengths[tagged], reverse[tagged],
                                                            paths[tagged]).tolist()
                    sub_paths = paths[tagged].tolist()
                    for k, b in enumerate(tagged.tolist()):
                        n = len(batch[b])
                        out[rows[b]] = self.tagset.spans(sub_paths[k][:n], probs[k][:n])
                self.stats.batch_seconds.append(time.perf_counter() - started)
                self.stats.batches += 1
                self.stats.positions += int(index.numel())
        self.stats.sentences += len(sentences)
        self.stats.text_tokens += sum(len(s) for s in sentences)
        return out

    def _emissions(self, index: torch.Tensor, reverse: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Tag scores [B, T, C] of the words whose table rows are ``index`` [B, T], the rows
        sorted by descending length (positions past a sentence's end score the output bias).

        The same function as BiLstmCrf.emissions_from_inputs (a test holds them equal), written
        out for throughput: the input projections come from the word table; the words are
        packed time-major, real words only (at position t the sentences still running are a
        prefix of the batch, as in torch's packed sequences), so each step reads one
        contiguous block; both directions step together in one batched matrix product; the
        cell gate's pre-activations are doubled in the table and the recurrent weights
        (_unpack_lstms), so one sigmoid serves all four gates: tanh(x) = 2 sigmoid(2x) - 1.
        """
        batch, steps = index.shape
        hidden = self._w_hh.shape[1]
        running = _running(lengths, steps)
        real = (torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)).t()  # [T, B] time-major
        total = int(lengths.sum())
        # Input projections of each direction, packed [2, N, 4H]; the backward one reads each
        # sentence in reverse.
        # (Table row r holds word r's forward projection at 2r, its backward one at 2r + 1.)
        four = self._table.shape[1]
        picks = torch.cat([index.t()[real] * 2, index.gather(1, reverse).t()[real] * 2 + 1])
        gates_in = self._table.index_select(0, picks).view(2, total, four)
        w_hh = self._w_hh
        h = torch.zeros(2, running[0], hidden)
        c = torch.zeros(2, running[0], hidden)
        out = torch.empty(2, total, hidden)
        offset = 0
        for k in running:
            if k < h.shape[1]:
                h, c = h[:, :k], c[:, :k]
            s = torch.sigmoid(torch.baddbmm(gates_in[:, offset : offset + k], h, w_hh))
            i = s[..., :hidden]
            c = torch.addcmul(torch.mul(s[..., hidden : 2 * hidden], c).sub_(i), i, s[..., 2 * hidden : 3 * hidden],
                              value=2.0)
            h = torch.mul(s[..., 3 * hidden :], torch.tanh(c), out=out[:, offset : offset + k])
            offset += k
        # The output layer is linear: each direction's share per packed word, summed per word
        # position; padding reads the appended zero row.
        emit = self.network.emit
        weight = emit.weight  # [C, 2H]
        shares = torch.zeros(2, total + 1, weight.shape[0])
        torch.matmul(out[0], weight[:, :hidden].t(), out=shares[0, :total])
        torch.matmul(out[1], weight[:, hidden:].t(), out=shares[1, :total])
        starts = torch.tensor([0, *running[:-1]]).cumsum(0)  # packed offset of each step
        rows = torch.arange(batch).unsqueeze(1)
        pad = ~real.t()
        forward_at = (starts.unsqueeze(0) + rows).masked_fill_(pad, total)
        backward_at = (starts[reverse] + rows).masked_fill_(pad, total)
        em = shares[0][forward_at] + shares[1][backward_at]
        return em + emit.bias if emit.bias is not None else em

    def _inputs(self, batch: Sequence[Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of the word table [B, T] (0: padding) of a batch, and its lengths. A word's input
        (embedding, char CNN, casing) and so its projection depend on the word alone: each is
        computed once and kept in a table; a tweet stream repeats its words, and most batches
        compute a handful of new ones."""
        rows = self._rows
        get = rows.get
        fresh: list[str] = []
        flat: list[int] = []
        append = flat.append
        for sentence in batch:
            for word in sentence:
                r = get(word)
                if r is None:
                    r = rows[word] = len(rows) + 1  # row 0 is the padding's zeros
                    fresh.append(word)
                append(r)
        if fresh:
            self._compute_rows(fresh)
        lengths = torch.tensor([len(s) for s in batch], dtype=torch.long)
        steps = int(lengths.max())
        positions = torch.arange(len(flat)) + torch.repeat_interleave(
            torch.arange(len(batch)) * steps - (torch.cumsum(lengths, 0) - lengths), lengths)
        index = torch.zeros(len(batch) * steps, dtype=torch.long)
        index[positions] = torch.tensor(flat, dtype=torch.long)
        return index.view(len(batch), steps), lengths

    def _compute_rows(self, words: list[str]) -> None:
        needed = len(self._rows) + 1
        if needed > _MAX_CACHED_WORDS:
            # A bounded table: start afresh (and recompute this batch's words) rather than grow forever.
            self._reset_cache()
            for w in {w: None for w in words}:
                self._rows[w] = len(self._rows) + 1
            words = list(self._rows)
            needed = len(self._rows) + 1
        if 2 * needed > self._table.shape[0]:
            # Rows past the old table are written before they are read.
            grown = torch.empty(max(2 * needed, 2 * self._table.shape[0]), self._table.shape[1])
            grown[: self._table.shape[0]] = self._table
            self._table = grown
        feats = self.vocab.features_many(words, keep=False)
        sizes = np.fromiter((len(f[2]) for f in feats), dtype=np.int64, count=len(feats))
        chars = np.zeros((len(words), max(1, int(sizes.max()))), dtype=np.int64)
        starts = np.cumsum(sizes) - sizes
        row = np.repeat(np.arange(len(words)), sizes)
        chars[row, np.arange(int(sizes.sum())) - np.repeat(starts, sizes)] = list(chain.from_iterable(f[2] for f in feats))
        subs = None
        if self.network.subwords is not None:
            pieces = np.fromiter((len(f[3]) for f in feats), dtype=np.int64, count=len(feats))
            sub_ids = np.zeros((len(words), MAX_SUBWORDS), dtype=np.int64)
            sub_ids[np.repeat(np.arange(len(words)), pieces),
                    np.arange(int(pieces.sum())) - np.repeat(np.cumsum(pieces) - pieces, pieces)] = \
                list(chain.from_iterable(f[3] for f in feats))
            subs = torch.from_numpy(sub_ids)
        x = self._word_inputs(torch.tensor([f[0] for f in feats]), torch.tensor([f[1] for f in feats]),
                              torch.from_numpy(chars), subs)
        first = self._rows[words[0]]
        # Both directions' projections of a word side by side: rows 2r and 2r + 1.
        rows = self._table[2 * first : 2 * (first + len(words))].view(len(words), -1)
        torch.addmm(self._b_ih, x, self._w_ih, out=rows)

    def _reset_cache(self) -> None:
        self._rows: dict[str, int] = {}
        # [2 x rows, 4H]: word r's input projection for the forward LSTM at row 2r, for the
        # backward one at 2r + 1; word 0 is the padding (zeros).
        self._table = torch.zeros(2 * 8192, self._w_ih.shape[1] // 2)

    def _word_inputs(self, word_ids: torch.Tensor, case_ids: torch.Tensor, char_ids: torch.Tensor,
                     subword_ids: torch.Tensor | None) -> torch.Tensor:
        """BiLstmCrf.word_inputs [N, D] of N words, with the character CNN as table lookups: a
        convolution over embedded characters is, per filter offset, a sum of each character's
        embedding projected through that offset's weights, so the projections of every
        character are computed once (_unpack_lstms) and the CNN becomes K gathers and adds."""
        net = self.network
        n, letters = char_ids.shape
        kernel, pad = self._char_proj.shape[0], self._char_pad
        # Outside the word the convolution reads zeros: the table's last row.
        padded = torch.full((n, letters + 2 * pad), self._char_proj.shape[1] - 1, dtype=torch.long)
        padded[:, pad : pad + letters] = char_ids
        width = letters + 2 * pad - kernel + 1  # the convolution's output length
        conv = self._char_bias.expand(n, width, -1).clone()
        for k in range(kernel):
            conv += self._char_proj[k].index_select(0, padded[:, k : k + width].reshape(-1)).view(n, width, -1)
        parts = [net.words(word_ids), conv.max(dim=1).values, net.cases(case_ids)]
        if net.subwords is not None:
            present = (subword_ids > 0).sum(-1, keepdim=True).clamp(min=1)
            parts.append(net.subwords(subword_ids).sum(-2) / present)
        return torch.cat(parts, dim=-1)

    def _unpack_lstms(self) -> None:
        """Both LSTMs' weights in the layout of _emissions: input projections side by side
        [D, 8H] (biases folded in, each direction's cell gate doubled), recurrent weights
        stacked [2, H, 4H] (cell gate doubled); and the character CNN as per-offset tables
        [K, chars + 1, F] of each character's projection (the last row: zeros, for padding)."""
        lstms = (self.network.forward_lstm, self.network.backward_lstm)
        hidden = lstms[0].hidden_size
        scale = torch.ones(4 * hidden)
        scale[2 * hidden : 3 * hidden] = 2.0
        self._w_ih = torch.cat([m.weight_ih_l0.t() * scale for m in lstms], dim=1).contiguous()
        self._b_ih = torch.cat([(m.bias_ih_l0 + m.bias_hh_l0) * scale for m in lstms])
        self._w_hh = torch.stack([m.weight_hh_l0.t() * scale for m in lstms]).contiguous()
        conv = self.network.char_cnn
        weight = conv.weight  # [F, char_dim, K]
        chars = self.network.chars.weight  # [num_chars, char_dim]
        proj = torch.einsum("cd,fdk->kcf", chars, weight)
        self._char_proj = torch.cat([proj, torch.zeros(proj.shape[0], 1, proj.shape[2])], dim=1).contiguous()
        self._char_pad = conv.padding[0]
        self._char_bias = conv.bias if conv.bias is not None else torch.zeros(weight.shape[0])


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """torch's intra-op pool at one thread for a batch: this network's ops are small (a [2, B,
    64] x [2, 64, 256] product per word position), so a second thread only adds a barrier per
    op, and on a CPU where another process holds the other core each barrier waits for a
    descheduled thread (shipped model, 2,000 tweets, busy 2-core machine: 221 tweets/s on 2
    threads, 3,884 on 1). The caller's setting is restored afterwards."""
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _running(lengths: torch.Tensor, steps: int) -> list[int]:
    """How many sentences (sorted longest first) are still running at each word position."""
    return (lengths.unsqueeze(0) > torch.arange(steps).unsqueeze(1)).sum(1).tolist()
