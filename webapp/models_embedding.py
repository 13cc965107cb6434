"""The vector of each memory's content, for semantic search and near-duplicate review.

Kept apart from models.py and imported at its end, like models_admin.py, so the models'
metadata, Alembic's comparison and create_all all see it.

One row per memory that has been embedded: `memory_id` is unique and the row goes with
the memory (ON DELETE CASCADE: purge, erase). Database triggers put every new memory,
and every memory whose content changes, in `embedding_queue` (deleting the vector of
the old content), whatever wrote it; the model empties the queue outside any write
transaction (webapp.services.vectors), so writes never wait for it. Every write of a
vector is a new row, so `seq` only grows: a search process that holds a user's vectors
in memory reads the rows past the last `seq` it saw (webapp.services.vector_index).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlmodel import Field, SQLModel


class MemoryEmbedding(SQLModel, table=True):
    """A memory's content as a packed unit vector (webapp.embeddings.pack) of one model."""

    __tablename__ = "memory_embedding"
    __table_args__ = (
        Index("ix_memory_embedding_user_id_seq", "user_id", "seq"),
        {"sqlite_autoincrement": True},
    )

    seq: int | None = Field(default=None, primary_key=True)
    memory_id: int = Field(
        sa_column=Column(
            Integer,
            ForeignKey("long_term_memory.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        )
    )
    # The memory's owner, copied so that one user's vectors are read by index alone.
    user_id: int = Field(
        sa_column=Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    )
    model: str = Field(sa_column=Column(String(64), nullable=False))
    vector: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class DuplicatePair(SQLModel, table=True):
    """Two of one user's memories whose vectors are at least duplicates.MIN_THRESHOLD
    alike (a < b). Precomputed by webapp.services.duplicates so /duplicates only reads
    pairs; a memory's pairs go with it (CASCADE) and are rewritten with its vector."""

    __tablename__ = "duplicate_pair"
    __table_args__ = (Index("ix_duplicate_pair_user_id_similarity", "user_id", "similarity"),)

    a: int = Field(
        sa_column=Column(
            Integer, ForeignKey("long_term_memory.id", ondelete="CASCADE"), primary_key=True
        )
    )
    b: int = Field(
        sa_column=Column(
            Integer,
            ForeignKey("long_term_memory.id", ondelete="CASCADE"),
            primary_key=True,
            index=True,
        )
    )
    user_id: int = Field(
        sa_column=Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    )
    similarity: float = Field(sa_column=Column(Float, nullable=False))


class DuplicateWatermark(SQLModel, table=True):
    """The highest memory_embedding.seq of a user already compared into duplicate_pair."""

    __tablename__ = "duplicate_watermark"

    user_id: int = Field(
        sa_column=Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    )
    seq: int = Field(sa_column=Column(Integer, nullable=False))


class DuplicateDismissal(SQLModel, table=True):
    """A group of near duplicates the user said to stop showing: its members' ids,
    sorted and comma-joined. A group is hidden while its members are a subset of one
    dismissed set, so a group that gains a member shows again."""

    __tablename__ = "duplicate_dismissal"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    members: str = Field(sa_column=Column(Text, nullable=False))


class EmbeddingQueue(SQLModel, table=True):
    """A memory whose content has no vector yet: filled by database triggers when a memory
    is created or its content changes, emptied as vectors are written (webapp.services.
    vectors.drain). `seq` is new each time a memory is queued again, so a vector made of
    content that has changed since is never written."""

    __tablename__ = "embedding_queue"
    __table_args__ = (
        Index("ix_embedding_queue_user_id_seq", "user_id", "seq"),
        {"sqlite_autoincrement": True},
    )

    seq: int | None = Field(default=None, primary_key=True)
    memory_id: int = Field(
        sa_column=Column(
            Integer,
            ForeignKey("long_term_memory.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        )
    )
    user_id: int = Field(
        sa_column=Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    )


class VectorCount(SQLModel, table=True):
    """How many vectors each user ever gained and lost (their count is the difference),
    kept by triggers on memory_embedding (webapp.services.vector_counts) for the search's
    cache of vectors, which counting 50,000 rows cost 3 to 5 ms a search."""

    __tablename__ = "vector_count"

    user_id: int = Field(
        sa_column=Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    )
    added: int = Field(sa_column=Column(BigInteger, nullable=False))
    removed: int = Field(sa_column=Column(BigInteger, nullable=False))
