// The status card: one child's answer as a caseworker reads it, each section with a freshness badge built
// from its provenance, and sections the caller may not read or that a source could not give shown as such.
import React from "react";

const SOURCE_NAMES = { ORR: "ORR (HHS)", ICE: "ICE ERO", EOIR: "EOIR (court)" };

export function ago(seconds) {
  if (seconds == null) return "age unknown";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `fetched ${s} s ago`;
  if (s < 3600) return `fetched ${Math.round(s / 60)} min ago`;
  if (s < 86400) return `fetched ${Math.round(s / 3600)} h ago`;
  return `fetched ${Math.round(s / 86400)} days ago`;
}

function day(value) { return value ? String(value).slice(0, 10) : "not recorded"; }
function when(value) { return value ? String(value).replace("T", " ").slice(0, 16) + " UTC" : "none scheduled"; }
function words(value) { return value ? String(value).replace(/_/g, " ").toLowerCase() : "unknown"; }

const STATUS_TEXT = {
  MISS: "fetched from the source for this answer",
  HIT: "from the gateway's cache, still fresh",
  STALE: "stale: the source could not be reached, so this is older cached data past its freshness limit",
};

function Badge({ prov, warning }) {
  const status = prov.cacheStatus;
  return (
    <li className="ucgw-prov">
      <span className={`ucgw-badge ucgw-badge-${status.toLowerCase()}`} data-cache-status={status}
            data-source={prov.source}>{status}</span>{" "}
      <span>
        {SOURCE_NAMES[prov.source] || prov.source}, {ago(prov.ageSeconds)}, {STATUS_TEXT[status] || status}
        {prov.sourceUpdatedAt ? `; the source last updated it ${day(prov.sourceUpdatedAt)}` : ""}
        {prov.recordFound === false ? "; the source holds no record" : ""}
        {status === "STALE" && warning ? `. Warning: ${warning}` : ""}
      </span>
    </li>
  );
}

function Freshness({ provenance, warnings }) {
  if (provenance === "derived") {
    return <p className="ucgw-note">Compared across the ORR, ICE and EOIR records above; as fresh as they are.</p>;
  }
  if (!provenance || provenance.length === 0) {
    return <p className="ucgw-note">Freshness not asked for in this query (add <code>provenance</code>).</p>;
  }
  return (
    <ul className="ucgw-freshness" aria-label="Freshness">
      {provenance.map((p, i) => <Badge key={i} prov={p} warning={warnings[p.source]} />)}
    </ul>
  );
}

const CODE_TEXT = {
  FORBIDDEN: "Withheld: your role may not read this",
  SOURCE_UNAVAILABLE: "Unavailable: the source could not be reached",
  SOURCE_TIMEOUT: "Unavailable: the source did not answer in time",
  SOURCE_BAD_RESPONSE: "Unavailable: the source sent a record that does not fit",
  NOT_FOUND: "Not found",
};

function Refused({ error }) {
  const code = (error.extensions && error.extensions.code) || "ERROR";
  return (
    <p className="ucgw-refused" data-error-code={code}>
      <span className={`ucgw-badge ucgw-badge-${code === "FORBIDDEN" ? "forbidden" : "unavailable"}`}>{code}</span>{" "}
      {CODE_TEXT[code] || error.message}
      {error.extensions && error.extensions.source ? ` (${error.extensions.source})` : ""}.
    </p>
  );
}

function Withheld({ errors }) {
  if (errors.length === 0) return null;
  const byCode = {};
  errors.forEach((e) => {
    const code = (e.extensions && e.extensions.code) || "ERROR";
    (byCode[code] = byCode[code] || []).push(e.path[e.path.length - 1]);
  });
  return Object.entries(byCode).map(([code, fields]) => (
    <p key={code} className="ucgw-refused" data-error-code={code}>
      <span className={`ucgw-badge ucgw-badge-${code === "FORBIDDEN" ? "forbidden" : "unavailable"}`}>{code}</span>{" "}
      {CODE_TEXT[code] || code}: {fields.join(", ")}.
    </p>
  ));
}

function Section({ id, title, value, errors, prefix, warnings, provenance, children }) {
  const here = errors.filter((e) => e.path && e.path.length >= prefix.length + 1
    && prefix.every((p, i) => e.path[i] === p) && e.path[prefix.length] === id.split(":")[0]);
  const whole = here.find((e) => e.path.length === prefix.length + 1);
  const parts = here.filter((e) => e.path.length > prefix.length + 1);
  const headingId = `ucgw-card-${id.replace(":", "-")}`;
  let body;
  if (whole && (value === null || value === undefined)) body = <Refused error={whole} />;
  else if (value === undefined) body = <p className="ucgw-note">Not asked for in this query.</p>;
  else if (value === null) body = <p className="ucgw-note">No record.</p>;
  else body = <>{children}<Withheld errors={parts} /><Freshness provenance={provenance} warnings={warnings} /></>;
  return (
    <section className="ucgw-section" aria-labelledby={headingId} data-section={id}>
      <h3 id={headingId}>{title}</h3>
      {body}
    </section>
  );
}

function Field({ label, children }) {
  return <><dt>{label}</dt><dd>{children}</dd></>;
}

function findChild(data) {
  if (!data) return null;
  if (data.child !== undefined) return { child: data.child, prefix: ["child"] };
  if (data.childStatusChanged) return { child: data.childStatusChanged.child, prefix: ["childStatusChanged", "child"] };
  if (Array.isArray(data.children) && data.children.length) return { child: data.children[0], prefix: ["children", 0] };
  return null;
}

export function StatusCard({ result }) {
  const found = result ? findChild(result.data) : null;
  const errors = (result && result.errors) || [];
  const warnings = {};
  ((result && result.extensions && result.extensions.warnings) || []).forEach((w) => { warnings[w.source] = w.message; });
  if (!found) {
    return (
      <div className="ucgw-card">
        <h2 id="ucgw-card-title">Status card</h2>
        <p className="ucgw-note">Run a query for one child (for example "One child's full status") to see it here.</p>
      </div>
    );
  }
  const { child, prefix } = found;
  const c = child || {};
  const topError = !child && errors.find((e) => e.path && e.path.length === prefix.length);
  const common = { errors, prefix, warnings };
  const hearing = c.hearing;
  const staleWords = Object.values(warnings);
  return (
    <div className="ucgw-card">
      <h2 id="ucgw-card-title">Status card{c.aNumber ? `: ${c.aNumber}` : ""}</h2>
      {topError ? <Refused error={topError} /> : null}
      {staleWords.length ? (
        <div className="ucgw-warning" role="note" aria-label="Stale data warning">
          <strong>Some of this answer is stale.</strong> {staleWords.join(" ")}
        </div>
      ) : null}
      {child ? <>
        <Section id="location" title="Location" value={c.location} provenance={c.location && c.location.provenance} {...common}>
          <dl>
            <Field label="Status">{words(c.location && c.location.status)}</Field>
            <Field label="Since">{day(c.location && c.location.since)}</Field>
            {c.location && c.location.facility ? <Field label="Facility">{[c.location.facility.name, c.location.facility.city, c.location.facility.state].filter(Boolean).join(", ")}</Field> : null}
          </dl>
        </Section>
        <Section id="sponsor" title="Sponsor" value={c.sponsor} provenance={c.sponsor && c.sponsor.provenance} {...common}>
          <dl>
            {c.sponsor && c.sponsor.name != null ? <Field label="Name">{c.sponsor.name}</Field> : null}
            {c.sponsor && c.sponsor.relationship != null ? <Field label="Relationship">{c.sponsor.relationship}</Field> : null}
            <Field label="Released to sponsor">{day(c.sponsor && c.sponsor.releasedAt)}</Field>
            {c.sponsor && c.sponsor.address ? <Field label="Lives in">{[c.sponsor.address.city, c.sponsor.address.state].filter(Boolean).join(", ")}</Field> : null}
          </dl>
        </Section>
        <Section id="nta" title="Notice to Appear" value={c.nta} provenance={c.nta && c.nta.provenance} {...common}>
          <dl>
            <Field label="Stage">{words(c.nta && c.nta.status)}</Field>
            <Field label="Issued">{day(c.nta && c.nta.issuedOn)}</Field>
            <Field label="Served">{day(c.nta && c.nta.servedOn)}</Field>
            <Field label="Filed with the court">{day(c.nta && c.nta.filedOn)}</Field>
          </dl>
        </Section>
        <Section id="hearing" title="Next hearing" value={hearing} provenance={hearing && hearing.provenance} {...common}>
          <dl>
            <Field label="Case">{words(hearing && hearing.caseStatus)}</Field>
            <Field label="Next hearing">{hearing && hearing.nextHearing ? `${when(hearing.nextHearing.startsAt)}${hearing.nextHearing.courtName ? `, ${hearing.nextHearing.courtName}` : ""}` : "none scheduled"}</Field>
          </dl>
        </Section>
        <Section id="hearing:missed" title="Missed hearings" value={hearing} provenance={hearing && hearing.provenance} {...common}>
          <p>{hearing && hearing.missedHearingCount != null
            ? (hearing.missedHearingCount === 0 ? "No missed hearings." : `${hearing.missedHearingCount} missed hearing${hearing.missedHearingCount === 1 ? "" : "s"}.`)
            : "Not asked for in this query."}</p>
        </Section>
        <Section id="discrepancies" title="Discrepancies" value={c.discrepancies} provenance="derived" {...common}>
          {c.discrepancies && c.discrepancies.length ? (
            <ul>{c.discrepancies.map((d, i) => <li key={i}><strong>{words(d.severity)}</strong>: {words(d.kind)}. {d.detail}</li>)}</ul>
          ) : <p>The agencies agree.</p>}
        </Section>
      </> : null}
    </div>
  );
}
