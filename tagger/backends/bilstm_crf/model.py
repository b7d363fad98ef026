"""The network: embeddings -> BiLSTM -> per-word tag scores -> linear-chain CRF.

The CRF is ours rather than pytorch-crf's: that package has had no release since 2019, knows
nothing of BIO constraints, and decodes by backtracking in Python one sequence at a time; here
decoding and marginals are batched over sentences (a loop over word positions only), transitions
a BIO/BIOES tag set forbids are masked in training and decoding alike, and it is ~80 lines.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from tagger.conll import split_tag

_FORBIDDEN = -10_000.0  # added to a forbidden transition's score: never taken, still finite


@dataclass
class NetworkConfig:
    num_words: int
    num_chars: int
    num_cases: int
    num_tags: int
    word_dim: int = 100
    char_dim: int = 30
    char_filters: int = 50
    char_kernel: int = 3
    case_dim: int = 8
    hidden: int = 128
    dropout: float = 0.5
    # Static subword embeddings (a pretrained encoder's input embeddings, projected to this
    # width and frozen): the lexical knowledge 30,000 tweets of word2vec cannot have. 0 = off.
    num_subwords: int = 0
    subword_dim: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def allowed_transitions(tags: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(from -> to, start, end) masks of the transitions that make a well-formed tag sequence."""
    parts = [split_tag(t) for t in tags]
    bioes = any(p in "ESLU" for p, _ in parts)
    n = len(tags)
    trans = torch.ones(n, n, dtype=torch.bool)
    start = torch.ones(n, dtype=torch.bool)
    end = torch.ones(n, dtype=torch.bool)
    for j, (pj, tj) in enumerate(parts):
        inside = pj in ("I", "E", "L")
        start[j] = not inside
        for i, (pi, ti) in enumerate(parts):
            open_entity = pi in ("B", "I")
            if inside:
                trans[i, j] = open_entity and ti == tj
            elif bioes:
                # after B-/I- the entity must continue with I-/E- of its type
                trans[i, j] = not open_entity
        if bioes:
            end[j] = pj not in ("B", "I")
    return trans, start, end


class Crf(nn.Module):
    def __init__(self, tags: Sequence[str]) -> None:
        super().__init__()
        n = len(tags)
        self.transitions = nn.Parameter(torch.zeros(n, n))
        self.start = nn.Parameter(torch.zeros(n))
        self.end = nn.Parameter(torch.zeros(n))
        trans, start, end = allowed_transitions(tags)
        self.register_buffer("trans_mask", (~trans).float() * _FORBIDDEN, persistent=False)
        self.register_buffer("start_mask", (~start).float() * _FORBIDDEN, persistent=False)
        self.register_buffer("end_mask", (~end).float() * _FORBIDDEN, persistent=False)

    def _scores(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (self.transitions + self.trans_mask, self.start + self.start_mask, self.end + self.end_mask)

    def _forward(self, em: torch.Tensor, mask: torch.Tensor, trans: torch.Tensor, start: torch.Tensor,
                 keep: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        alpha = start + em[:, 0]
        alphas = [alpha]
        for t in range(1, em.shape[1]):
            nxt = torch.logsumexp(alpha.unsqueeze(2) + trans, dim=1) + em[:, t]
            alpha = torch.where(mask[:, t : t + 1], nxt, alpha)
            if keep:
                alphas.append(alpha)
        return alpha, alphas

    def nll(self, em: torch.Tensor, allowed: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean negative log-probability of the tag sequences ``allowed`` [B, T, C] admits.

        A fully labelled sentence allows one tag per word (the usual CRF likelihood); a corpus
        labelled with coarser types (tagger.corpora: ORG may be company or sportsteam, BTC's O may
        be a product) allows several, and the loss is the mass on all paths through them.
        ``mask`` [B, T] marks real words.
        """
        trans, start, end = self._scores()
        alpha, _ = self._forward(em, mask, trans, start)
        log_z = torch.logsumexp(alpha + end, dim=1)
        gold_alpha, _ = self._forward(em.masked_fill(~allowed, _FORBIDDEN), mask, trans, start)
        log_gold = torch.logsumexp(gold_alpha + end, dim=1)
        return (log_z - log_gold).mean()

    def viterbi(self, em: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The best tag path of each sentence [B, T] (padding positions are 0).

        Computed over the sentences longest first, so that at each position the ones still
        running are a prefix of the batch and nothing is computed past a sentence's end; the
        maximum runs over the last (contiguous) axis of [B, to, from]."""
        batch, steps, _ = em.shape
        descending = bool((lengths[:-1] >= lengths[1:]).all())
        order = None
        if not descending:
            order = torch.argsort(lengths, descending=True, stable=True)
            em, lengths = em[order], lengths[order]
        trans, start, end = self._scores()
        trans_from = trans.unsqueeze(1)  # [from, 1, to]
        trans_t = trans.t().contiguous()  # [to, from]
        running = (lengths.unsqueeze(0) > torch.arange(steps).unsqueeze(1)).sum(1).tolist()
        score = start + em[:, 0]
        # Only the best scores go forward (a maximum over the outer axis of [from, B, to] is
        # vectorised; one that also returns its indices is ~6x slower here); backtracking
        # recomputes the best predecessor of the one tag each sentence took.
        history = []
        for t in range(1, steps):
            k = running[t]
            if not k:
                break
            prev = score[:k]
            history.append(prev.clone())
            score[:k] = (prev.t().unsqueeze(2) + trans_from).amax(0) + em[:k, t]
        cur = (score + end).argmax(1)
        path = torch.zeros(batch, steps, dtype=torch.long)
        for t in range(len(history), 0, -1):
            k = running[t]
            path[:k, t] = cur[:k]
            cur[:k] = (history[t - 1] + trans_t[cur[:k]]).argmax(1)
        path[:, 0] = cur
        if order is not None:
            path = torch.empty_like(path).index_copy_(0, order, path)
        return path

    def path_marginals(self, em: torch.Tensor, lengths: torch.Tensor, reverse: torch.Tensor,
                       path: torch.Tensor) -> torch.Tensor:
        """The marginal probability [B, T] of each tag of ``path`` (forward-backward).

        Run in probability space with each step rescaled: a [B, C] x [C, C] product per word
        instead of a log-sum-exp over [B, C, C], and the scales cancel in the normalisation per
        position. ``reverse`` [B, T] indexes each sentence backwards within its length (padding
        in place), which turns the backward pass into a forward pass under transposed
        transitions.
        """
        trans, start, end = self._scores()
        steps = em.shape[1]
        mask = (torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2)
        # Any per-position shift of the emissions cancels too; this one keeps exp() in range.
        potential = (em - em.max(dim=2, keepdim=True).values).exp()
        rev3 = reverse.unsqueeze(2).expand_as(em)

        def scaled_forward(pot: torch.Tensor, step: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
            alpha = first.exp() * pot[:, 0]
            alpha = alpha / alpha.sum(1, keepdim=True)
            out = [alpha]
            for t in range(1, steps):
                nxt = (alpha @ step) * pot[:, t]
                nxt = nxt / nxt.sum(1, keepdim=True).clamp(min=1e-30)
                alpha = torch.where(mask[:, t], nxt, alpha)
                out.append(alpha)
            return torch.stack(out, 1)

        alphas = scaled_forward(potential, trans.exp(), start)
        betas = scaled_forward(potential.gather(1, rev3), trans.t().exp(), end).gather(1, rev3)
        # alpha_t and beta_t both hold the emission at t: divide it out once.
        joint = alphas * betas / potential.clamp(min=1e-30)
        marginal = joint / joint.sum(2, keepdim=True).clamp(min=1e-30)
        return marginal.gather(2, path.unsqueeze(2)).squeeze(2)


class BiLstmCrf(nn.Module):
    def __init__(self, config: NetworkConfig, tags: Sequence[str]) -> None:
        super().__init__()
        self.config = config
        c = config
        self.words = nn.Embedding(c.num_words, c.word_dim, padding_idx=0)
        self.chars = nn.Embedding(c.num_chars, c.char_dim, padding_idx=0)
        self.char_cnn = nn.Conv1d(c.char_dim, c.char_filters, c.char_kernel, padding=c.char_kernel // 2)
        self.cases = nn.Embedding(c.num_cases, c.case_dim, padding_idx=0)
        self.subwords = nn.Embedding(c.num_subwords, c.subword_dim, padding_idx=0) if c.subword_dim else None
        width = c.word_dim + c.char_filters + c.case_dim + c.subword_dim
        # Two one-way LSTMs instead of one bidirectional: the backward one reads each sentence
        # reversed within its own length, so padding never enters a real word's state and no
        # packed sequences are needed.
        self.forward_lstm = nn.LSTM(width, c.hidden, batch_first=True)
        self.backward_lstm = nn.LSTM(width, c.hidden, batch_first=True)
        self.dropout = nn.Dropout(c.dropout)
        self.emit = nn.Linear(2 * c.hidden, c.num_tags)
        self.crf = Crf(tags)

    @property
    def input_width(self) -> int:
        c = self.config
        return c.word_dim + c.char_filters + c.case_dim + c.subword_dim

    def word_inputs(self, word_ids: torch.Tensor, case_ids: torch.Tensor, char_ids: torch.Tensor,
                    subword_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The LSTM's input for each word [..., D]: a function of the word alone, so inference
        computes it once per distinct word (tagger.backends.bilstm_crf.inference)."""
        *lead, letters = char_ids.shape
        chars = self.chars(char_ids.reshape(-1, letters)).transpose(1, 2)
        shape = self.char_cnn(chars).max(dim=2).values.view(*lead, -1)
        parts = [self.words(word_ids), shape, self.cases(case_ids)]
        if self.subwords is not None:
            present = (subword_ids > 0).sum(-1, keepdim=True).clamp(min=1)
            parts.append(self.subwords(subword_ids).sum(-2) / present)
        return torch.cat(parts, dim=-1)

    def emissions(self, word_ids: torch.Tensor, case_ids: torch.Tensor, char_ids: torch.Tensor,
                  reverse: torch.Tensor, subword_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.emissions_from_inputs(self.word_inputs(word_ids, case_ids, char_ids, subword_ids), reverse)

    def emissions_from_inputs(self, x: torch.Tensor, reverse: torch.Tensor) -> torch.Tensor:
        x = self.dropout(x)
        forward, _ = self.forward_lstm(x)
        rev = reverse.unsqueeze(2)
        backward, _ = self.backward_lstm(x.gather(1, rev.expand_as(x)))
        backward = backward.gather(1, rev.expand_as(backward))
        h = self.dropout(torch.cat([forward, backward], dim=2))
        return self.emit(h)


def reverse_index(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """[B, T]: position t of each sentence read backwards (len-1-t), padding left in place."""
    t = torch.arange(steps).unsqueeze(0)
    lengths = lengths.unsqueeze(1)
    return torch.where(t < lengths, lengths - 1 - t, t)
