"""``python -m kb migrate``: build the target backend's catalog from the settings and the options,
copy the knowledge base (:func:`kb.migrate.migrate`), print the report. Exit status 0 when the copy
is verified (identical rankings on the fixed questions), 1 when it is not."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any, TextIO

from pydantic import SecretStr

from kb.errors import KnowledgeBaseError
from kb.migrate import migrate
from kb.service import validate_name


def run_migrate(services: Any, args: argparse.Namespace, out: TextIO) -> int:
    from kb.services import build_store_catalog

    settings = services.settings
    update: dict[str, Any] = {"backend": args.to}
    if args.uri:
        update["uri"] = args.uri
    if args.token:
        update["token"] = SecretStr(args.token)
    if args.prefix:
        update["collection_prefix"] = args.prefix
    target_settings = settings.model_copy(
        update={"vector_store": settings.vector_store.model_copy(update=update)}
    )
    source_catalog = services.kbs.stores
    target_catalog = build_store_catalog(target_settings)
    source_label = f"{source_catalog.backend} ({source_catalog.location})"
    target_label = f"{target_catalog.backend} ({target_catalog.location})"
    if source_label == target_label:
        raise KnowledgeBaseError(f"source and target are the same: {source_label}")
    name = validate_name(args.kb)
    try:
        report = migrate(
            name,
            services.kbs.existing(name),
            target_catalog.store(name),
            services.kbs.embedder_for(name),
            source_label=source_label,
            target_label=target_label,
        )
    finally:
        target_catalog.close()
    if args.json:
        print(json.dumps({**asdict(report), "verified": report.verified}, ensure_ascii=False), file=out)
    else:
        for question in report.mismatches:
            print(f"differs: {question}", file=out)
        print(report.summary(), file=out)
    return 0 if report.verified else 1
