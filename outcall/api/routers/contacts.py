"""/api/v1/campaigns/{name}/contacts: upload (CSV/XLSX), add one (speed-to-lead), list, export."""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response, StreamingResponse

from engine.campaign.contacts import Contact, assign_variant
from engine.campaign.scheduler import CampaignConfig
from engine.errors import ConfigError
from outcall.api.deps import CtxDep, Manager, Page, Paging, Reader, page
from outcall.api.problems import Problem
from outcall.api.routers.campaigns import get_campaign
from outcall.api.schemas import ContactCreate, ContactPublic, ConvertedResult, ImportReportPublic
from outcall.campaign_cli import EXPORT_FIELDS, _export_row
from outcall.contacts_import import import_contacts, normalise_phone
from outcall.masking import mask_phone

router = APIRouter(prefix="/api/v1/campaigns/{name}/contacts", tags=["contacts"])

SPEED_TO_LEAD_PRIORITY = 100
UPLOAD_SUFFIXES = (".csv", ".txt", ".tsv", ".xlsx", ".xlsm", ".xls", ".ods")


@router.get("", response_model=Page[ContactPublic])
def list_contacts(
    name: str, request: Request, c: CtxDep, who: Reader, p: Paging, state: str | None = None
) -> Page[Any]:
    get_campaign(c, name)
    items, total = c.reports.contacts(name, state=state, limit=p.limit, offset=p.offset)
    return page(request, who.view(items), total, p)


@router.post("", status_code=201, response_model=ContactPublic)
def add_contact(name: str, body: ContactCreate, c: CtxDep, who: Manager) -> Any:
    """Add one contact. `priority: "now"` is speed-to-lead: due immediately and ahead of the list."""
    cfg: CampaignConfig = get_campaign(c, name)["config"]
    phone, why = normalise_phone(body.phone)
    if phone is None:
        raise Problem(422, why, kind="invalid-phone")
    prio = (
        SPEED_TO_LEAD_PRIORITY
        if body.priority == "now"
        else 0
        if body.priority == "normal"
        else body.priority
    )
    contact = Contact(
        campaign=name,
        phone=phone,
        name=body.name,
        timezone=body.timezone,
        consent=body.consent,
        variables=body.variables,
        priority=int(prio),
        variant=assign_variant(phone, cfg.variants) if cfg.variants else None,
    )
    inserted, _dup = c.store.add_contacts_sync(name, [contact], now=datetime.now(UTC).timestamp())
    if not inserted:
        raise Problem(409, f"{mask_phone(phone)} is already in campaign {name!r}", kind="conflict")
    if c.scheduler is not None:
        c.scheduler.wake()
    return c.reports.contact(name, phone)


@router.post("/{phone}/converted", response_model=ConvertedResult)
def contact_converted(name: str, phone: str, c: CtxDep, who: Manager) -> ConvertedResult:
    """The CRM reports this contact converted: pending attempts (and so follow-ups of later calls) stop.
    The same event can arrive over MQTT (`outcall/control/<campaign>`, action `converted`)."""
    get_campaign(c, name)
    number, why = normalise_phone(phone)
    if number is None:
        raise Problem(422, why, kind="invalid-phone")
    stopped = c.store.stop_contact_sync(name, number, "converted")
    c.auth.audit(
        who.actor, who.role.value, "contact.converted", number, {"campaign": name, "stopped": stopped}
    )
    phone_out = mask_phone(number) if who.masked else number
    return ConvertedResult(campaign=name, phone=phone_out or number, stopped=stopped)


@router.post("/upload", response_model=ImportReportPublic)
def upload_contacts(
    name: str,
    c: CtxDep,
    who: Manager,
    file: Annotated[UploadFile, File(description="CSV (UTF-8/BOM/GBK) or XLSX call list")],
    map: Annotated[list[str] | None, Form(description="FIELD=COLUMN, e.g. phone=手机号 (repeatable)")] = None,
) -> dict[str, Any]:
    """Same report as `outcall campaign import --json`: {imported, duplicates, invalid: [{row, reason}]}."""
    get_campaign(c, name)
    suffix = Path(file.filename or "upload.csv").suffix.lower() or ".csv"
    if suffix not in UPLOAD_SUFFIXES:
        raise Problem(
            415, f"cannot import {suffix} files", kind="unsupported-file", hint="send .csv or .xlsx"
        )
    mapping: dict[str, str] = {}
    for pair in map or []:
        k, sep, v = pair.partition("=")
        if not sep or not k:
            raise Problem(422, f"map {pair!r} is not FIELD=COLUMN", kind="validation")
        mapping[k] = v
    with tempfile.TemporaryDirectory(prefix="outcall-upload-") as d:
        path = Path(d) / f"list{suffix}"
        with path.open("wb") as out:
            shutil.copyfileobj(file.file, out, 1 << 20)
        try:
            rep = import_contacts(c.store, name, path, mapping=mapping)
        except ConfigError as e:
            raise Problem(
                422,
                str(e.args[0]).replace(str(path), file.filename or "upload"),
                kind="bad-file",
                hint=e.hint,
            ) from e
    c.auth.audit(
        who.actor,
        who.role.value,
        "contacts.import",
        name,
        {"file": file.filename, "imported": rep.imported, "invalid": rep.invalid_count},
    )
    if c.scheduler is not None:
        c.scheduler.wake()
    return rep.as_dict()


@router.get("/export", response_class=StreamingResponse)
def export_contacts(
    name: str, c: CtxDep, who: Reader, format: Annotated[Literal["csv"], Query()] = "csv"
) -> Response:
    """Contacts with their results as CSV (UTF-8 with BOM). Masked for viewers; audited."""
    get_campaign(c, name)
    c.auth.audit(who.actor, who.role.value, "contacts.export", name, {"format": format, "masked": who.masked})
    rows = c.store.iter_contacts_sync(name)

    def gen() -> Any:
        buf = io.StringIO()
        w = csv.writer(buf)
        buf.write("\ufeff")
        w.writerow(EXPORT_FIELDS)
        for r in rows:
            if who.masked:
                r = {**r, "phone": mask_phone(r["phone"])}
            w.writerow(_export_row(r))
            if buf.tell() > 1 << 16:
                yield buf.getvalue().encode("utf-8")
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue().encode("utf-8")

    return StreamingResponse(
        gen(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )
