"""LightningDataModule for retrieval distillation: examples with mined + random negatives, eval queries."""

from __future__ import annotations

import logging

import lightning as L
from torch.utils.data import DataLoader

from kd.retrieval.data.buckets import LengthBucketBatchSampler
from kd.retrieval.data.collate import DistillationCollator
from kd.retrieval.data.examples import DistillationExamples, EpochSampler, Example
from kd.retrieval.data.mining import bm25_rankings, dense_rankings, mine_hard_negatives, teacher_rankings
from kd.retrieval.data.resumable_loader import ResumableDataLoader
from kd.retrieval.data.sources import RetrievalSplits
from kd.errors import ConfigError

log = logging.getLogger(__name__)


class RetrievalDataModule(L.LightningDataModule):
    """Builds the training examples once (``setup``) and serves them with per-epoch random negatives.

    Args:
        splits: corpus, train/eval queries and qrels, optional triplets.
        student: the ``BiEncoder`` (tokenises for training; its index mines dense negatives).
        teacher: the ``CrossEncoder`` (tokenises pairs for on-the-fly scoring; filters mined negatives).
        num_negatives: k negatives per example (given, then mined, then random).
        mined_negatives: how many of the k come from mining (``mining``: ``none``, ``bm25``, ``dense`` = the
            student's own index, or ``teacher`` = a corpus teacher's ranking, e.g. the ensemble's), taken from the
            top ``mining_depth`` candidates of each query.
        teacher_filter: drop mined candidates the teacher scores >= its score of the positive minus
            ``false_negative_margin`` (likely unlabelled positives).
        batch_size: queries per training batch (each brings 1 + k documents; every other query's documents
            are in-batch negatives for the contrastive term).
        pretokenize: tokenise every training query and fixed document once at set-up (training batches then
            only pad; random negatives are tokenised when drawn).
        length_buckets: batch examples of similar token length together (``LengthBucketBatchSampler``;
            deterministic given seed and epoch) instead of the plain seeded shuffle (``EpochSampler``).
        doc_group_size: embed each batch's B*(1+k) documents in length-sorted groups of this size, each padded
            to its own longest (same vectors, fewer padded positions); None pads all to the longest.
    """

    def __init__(self, splits: RetrievalSplits, student, teacher=None, num_negatives: int = 3,
                 mined_negatives: int = 0, mining: str = "bm25", mining_depth: int = 30,
                 teacher_filter: bool = True, false_negative_margin: float = 0.0, batch_size: int = 16,
                 eval_batch_size: int = 64, num_workers: int = 0, seed: int = 0, score_cache=None,
                 pretokenize: bool = True, length_buckets: bool = False, doc_group_size: int | None = None):
        super().__init__()
        if mining not in ("none", "bm25", "dense", "teacher"):
            raise ConfigError(f"data.mining must be none, bm25, dense or teacher, got {mining!r}")
        if mining == "teacher" and not hasattr(teacher, "corpus_scores"):
            raise ConfigError("data.mining=teacher needs a teacher that ranks the corpus (teacher=ensemble, bm25 or "
                              "bi_encoder); a cross-encoder only scores given pairs")
        if mined_negatives > num_negatives:
            raise ConfigError(f"data.mined_negatives={mined_negatives} exceeds data.num_negatives={num_negatives}")
        if num_negatives >= len(splits.corpus):
            raise ConfigError(f"data.num_negatives={num_negatives} is larger than the corpus can supply "
                              f"({len(splits.corpus)} documents)")
        self.splits = splits
        self.student = student
        self.teacher = teacher
        self.num_negatives = num_negatives
        self.mined_negatives = mined_negatives if mining != "none" else 0
        self.mining = mining
        self.mining_depth = mining_depth
        self.teacher_filter = teacher_filter
        self.false_negative_margin = false_negative_margin
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.score_cache = score_cache  # TeacherScoreCache or None
        self.pretokenize = pretokenize
        self.length_buckets = length_buckets
        self.doc_group_size = doc_group_size
        self.train_set: DistillationExamples | None = None
        self.positives = self._known_positives()

    def _known_positives(self) -> dict[str, set[str]]:
        positives: dict[str, set[str]] = {}
        for q, docs in self.splits.train_qrels.items():
            positives.setdefault(q, set()).update(d for d, r in docs.items() if r > 0)
        for t in self.splits.triplets:
            positives.setdefault(t.query_id, set()).add(t.positive_id)
        return positives

    def base_examples(self) -> list[Example]:
        """(query, positive, given negatives) from the triplets, or one example per relevant qrel."""
        if self.splits.triplets:
            return [Example(t.query_id, t.positive_id, tuple(t.negative_ids)) for t in self.splits.triplets]
        return [Example(q, d) for q, docs in self.splits.train_qrels.items() for d, r in sorted(docs.items()) if r > 0]

    def mine(self, examples: list[Example]) -> list[Example]:
        """Append mined hard negatives to each example's fixed negatives."""
        if self.mined_negatives == 0:
            return examples
        queries = {e.query_id: self.splits.train_queries[e.query_id] for e in examples}
        log.info("mining %d %s negatives for %d examples", self.mined_negatives, self.mining, len(examples))
        if self.mining == "bm25":
            rankings = bm25_rankings(self.splits.corpus, queries, self.mining_depth)
        elif self.mining == "teacher":
            rankings = teacher_rankings(self.teacher, self.splits.corpus, queries, self.mining_depth)
        else:
            rankings = dense_rankings(self.student, self.splits.corpus, queries, self.mining_depth)
        scorer = None
        if self.teacher_filter and self.teacher is not None:
            scorer = self.teacher_scorer()
        mined = mine_hard_negatives(
            [(e.query_id, e.positive_id) for e in examples], rankings, self.positives, self.mined_negatives,
            queries=self.splits.train_queries, corpus=self.splits.corpus, teacher=scorer,
            false_negative_margin=self.false_negative_margin,
        )
        return [Example(e.query_id, e.positive_id, tuple(dict.fromkeys((*e.fixed_negative_ids, *m))))
                for e, m in zip(examples, mined)]

    def teacher_scorer(self):
        """(queries, docs) -> teacher scores, through the score cache when there is one."""
        if self.score_cache is None:
            return lambda qs, ds: self.teacher.score(qs, ds).tolist()
        from kd.retrieval.teacher_cache import score_with_cache

        return lambda qs, ds: score_with_cache(self.score_cache, self.teacher, qs, ds).tolist()

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None) and self.train_set is None:
            examples = self.mine(self.base_examples())
            self.train_set = DistillationExamples(
                examples, self.splits.train_queries, self.splits.corpus, self.positives, self.num_negatives, self.seed
            )
            if self.pretokenize and hasattr(self.student, "pretokenize"):
                texts = [self.splits.train_queries[e.query_id] for e in examples]
                texts += [self.splits.corpus[d] for e in examples for d in (e.positive_id, *e.fixed_negative_ids)]
                log.info("pretokenised %d training texts", self.student.pretokenize(texts))

    def example_lengths(self) -> list[int]:
        """Token count of each training example's query, positive and fixed negatives (the bucketing key)."""
        assert self.train_set is not None, "call setup('fit') first"
        lengths = []
        for e in self.train_set.examples:
            texts = [self.splits.train_queries[e.query_id], *(self.splits.corpus[d] for d in (e.positive_id,
                                                                                         *e.fixed_negative_ids))]
            lengths.append(sum(len(ids) for ids in self.student.token_ids(texts)))
        return lengths

    def collator(self) -> DistillationCollator:
        return DistillationCollator(self.student, self.teacher, self.positives,
                                    tokenize_pairs=self.score_cache is None and hasattr(self.teacher, "tokenize"), doc_group_size=self.doc_group_size)

    def train_dataloader(self) -> DataLoader:
        """Seeded per-epoch order; resumable mid-epoch (its position is saved in Lightning checkpoints)."""
        assert self.train_set is not None, "call setup('fit') first"
        world, rank = self.process_share()
        if self.length_buckets:
            if world > 1:
                raise ConfigError("data.length_buckets=true is single-process only; use it without trainer=ddp")
            drop_last = len(self.train_set) > self.batch_size
            batches = LengthBucketBatchSampler(self.example_lengths(), self.batch_size, self.seed, drop_last=drop_last)
            # not resumable mid-epoch (Lightning warns on such a resume); kd's default sampler below is
            return DataLoader(self.train_set, batch_sampler=batches, collate_fn=self.collator(),
                              num_workers=self.num_workers, persistent_workers=self.num_workers > 0)
        sampler = EpochSampler(len(self.train_set), self.seed, num_replicas=world, rank=rank)
        return ResumableDataLoader(
            self.train_set, batch_size=self.batch_size, sampler=sampler, collate_fn=self.collator(),
            num_workers=self.num_workers, drop_last=len(sampler) > self.batch_size,
            persistent_workers=self.num_workers > 0,
        )

    def process_share(self) -> tuple[int, int]:
        """(number of data-parallel processes, this process's rank): (1, 0) outside a distributed run."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def val_dataloader(self) -> DataLoader:
        """Batches of eval query ids (lists of str; each process its share); the module encodes the corpus."""
        world, rank = self.process_share()
        return DataLoader(list(self.splits.eval_queries)[rank::world], batch_size=self.eval_batch_size,
                          shuffle=False, collate_fn=list)
