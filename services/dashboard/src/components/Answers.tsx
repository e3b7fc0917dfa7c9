/**
 * What the model said: the test stage's answers, one test record per row (prompt, reference, this model's
 * answer, the serving model's, the untrained model's), and the Evaluation view of a run that filters them to
 * the answers that decide a gate: wrong ones, and ones the serving model gets right that this model does not; of
 * the test suites, the answers a judge disagreed on and the answers still unsafe after the gateway's filter.
 * The test figures with their 95% intervals and the comparison with the serving model stand above them.
 */
import { ANSWER_FILTERS, type ChampionComparison, describeInterval, type Interval, type SuiteResult, type TestAnswer } from '@tempered/api-contract';
import { useQuery } from '@tanstack/react-query';
import { useState } from 'react';
import { queries, ANSWERS_LIMIT } from '../queries';
import { Loaded } from './common';
import { Table } from './Table';

type Filter = (typeof ANSWER_FILTERS)[number];
const FILTER_LABELS: Record<Filter, string> = {
  all: 'All',
  wrong: 'Wrong',
  'newly-wrong': 'Newly wrong against the serving model',
  'judge-disagreed': 'Judge disagreed',
  unsafe: 'Unsafe',
};
const OUTCOME_WORDS = { win: 'this model wins', loss: 'the other wins', tie: 'tie', 'no-verdict': 'no verdict' } as const;

/** A few answers, each with the serving model's beside it when it answered the same record. */
export function AnswerList({ answers, testId = 'answers' }: { answers: TestAnswer[]; testId?: string }) {
  const champion = answers.some((a) => a.championAnswer !== undefined);
  const labels = answers.some((a) => a.label !== undefined);
  const judged = answers.some((a) => a.judge !== undefined);
  return (
    <Table columns={['prompt', 'reference', 'this model', ...(champion ? ['serving model'] : []), 'untrained', ...(judged ? ['judge'] : [])]} className="compact answers" testId={testId}>
      {answers.map((a) => (
        <tr key={`${a.suite ?? ''}/${a.key}`} data-key={a.key} data-correct={a.correct} data-suite={a.suite ?? ''} data-unsafe={a.unsafe ?? ''}>
          <td className="pre small" title={a.key}>
            {a.suite && <div className="muted">suite {a.suite}</div>}
            {a.prompt}
          </td>
          <td className="pre small">{a.reference}</td>
          <td className={`pre small ${a.correct ? 'better' : 'worse'}`}>
            {a.correct ? '✓ ' : '✗ '}
            {a.answer}
            {labels && <div className="muted">label: {a.label ?? 'none'}</div>}
            {a.unsafe && <div className="worse">unsafe after the output filter</div>}
          </td>
          {champion && (
            <td className={`pre small ${a.championCorrect ? 'better' : a.championAnswer === undefined ? '' : 'worse'}`}>
              {a.championAnswer === undefined ? '—' : `${a.championCorrect ? '✓ ' : '✗ '}${a.championAnswer}`}
            </td>
          )}
          <td className="pre small muted">{a.baselineAnswer}</td>
          {judged && (
            <td className="small" data-outcome={a.judge?.outcome ?? ''}>
              {a.judge ? (
                <>
                  {OUTCOME_WORDS[a.judge.outcome]}
                  <div className="muted">
                    shown first: {a.judge.verdictAB ?? 'no verdict'}, shown second: {a.judge.verdictBA ?? 'no verdict'}
                    {a.judge.disagreed ? '; disagreed' : ''}
                  </div>
                  {(a.judge.replyAB != null || a.judge.replyBA != null) && (
                    <div className="pre muted" data-testid="judge-replies">
                      judge said: “{a.judge.replyAB ?? ''}” / “{a.judge.replyBA ?? ''}”
                    </div>
                  )}
                  <div className="pre muted">other: {a.judge.otherAnswer}</div>
                </>
              ) : (
                '—'
              )}
            </td>
          )}
        </tr>
      ))}
    </Table>
  );
}

/** How sure the comparison with the serving model is, in one sentence. */
export function ChampionSummary({ champion }: { champion: ChampionComparison }) {
  const d = champion.difference;
  const verdict =
    champion.verdict === 'better'
      ? `better than the serving version v${champion.version} by at least the margin ${champion.margin}`
      : champion.verdict === 'worse'
        ? `short of the margin ${champion.margin} against the serving version v${champion.version}`
        : champion.verdict === 'unsure'
          ? `not distinguishable from the serving version v${champion.version} at the margin ${champion.margin}: the test records cannot tell`
          : champion.challengerWins
            ? `not worse than the serving version v${champion.version}`
            : `worse than the serving version v${champion.version}`;
  return (
    <p className="small" data-testid="champion-summary" data-verdict={champion.verdict ?? ''}>
      Exact match {champion.challengerExactMatch.toFixed(3)} against {champion.championExactMatch.toFixed(3)} on the same {champion.examples} records: {verdict}.
      {d && <> Difference {describeInterval(d, 'paired records')}</>}
      {champion.pValue !== undefined && <>, McNemar p = {champion.pValue.toPrecision(2)}</>}
      {champion.regressions !== undefined && <>; {champion.regressions} records the serving model answers right are answered wrong here</>}.
    </p>
  );
}

/** The candidate's figures with their intervals, as the test stage's summary holds them. */
function IntervalFacts({ intervals }: { intervals: Record<string, Interval | undefined> }) {
  const rows = Object.entries(intervals).filter((e): e is [string, Interval] => e[1] !== undefined);
  if (rows.length === 0) return null;
  return (
    <ul className="small" data-testid="intervals">
      {rows.map(([name, i]) => (
        <li key={name} data-metric={name}>
          {name}: {describeInterval(i)}
        </li>
      ))}
    </ul>
  );
}

/** Each test suite's figures with their intervals, and what became of its records. */
export function SuitesTable({ suites }: { suites: SuiteResult[] }) {
  return (
    <Table columns={['suite', 'metric', ['value', 'num'], '95% interval', ['n', 'num']]} className="compact" testId="suites">
      {suites.flatMap((s) => [
        ...Object.entries(s.metrics).map(([metric, i]) => (
          <tr key={`${s.name}-${metric}`} data-suite={s.name} data-metric={metric}>
            <th scope="row" title={`${s.input} records read, ${s.quarantined} quarantined, ${s.removed} empty after cleaning`}>
              {s.name}
            </th>
            <td>{metric}</td>
            <td className="num">{i.value.toFixed(3)}</td>
            <td>
              {i.low.toFixed(3)} to {i.high.toFixed(3)}
            </td>
            <td className="num">{i.n}</td>
          </tr>
        )),
        ...(s.perplexity
          ? [
              <tr key={`${s.name}-perplexity`} data-suite={s.name} data-metric="perplexity">
                <th scope="row">{s.name}</th>
                <td>perplexity</td>
                <td className="num">{s.perplexity.value.toFixed(3)}</td>
                <td className="muted">token-weighted, one figure</td>
                <td className="num">{s.perplexity.n}</td>
              </tr>,
            ]
          : []),
        ...(s.judged
          ? [
              <tr key={`${s.name}-judged`} data-suite={s.name} data-metric="judged">
                <th scope="row">{s.name}</th>
                <td>judged by {s.judged.judge}</td>
                <td colSpan={2}>
                  against the {s.judged.against.kind === 'serving' ? `serving version v${s.judged.against.version}` : 'untrained model'}: {s.judged.wins} wins, {s.judged.losses} losses, {s.judged.ties} ties,{' '}
                  {s.judged.noVerdict} no verdict; agrees with the reference on {s.judged.agreement.agreed} of {s.judged.agreement.decided}
                </td>
                <td className="num">{s.judged.pairs}</td>
              </tr>,
            ]
          : []),
        ...(s.unsafeBeforeFilter
          ? [
              <tr key={`${s.name}-unfiltered`} data-suite={s.name} data-metric="unsafe_before_filter">
                <th scope="row">{s.name}</th>
                <td>unsafe before the filter</td>
                <td className="num">{s.unsafeBeforeFilter.value.toFixed(3)}</td>
                <td>
                  {s.unsafeBeforeFilter.low.toFixed(3)} to {s.unsafeBeforeFilter.high.toFixed(3)}
                </td>
                <td className="num">{s.unsafeBeforeFilter.n}</td>
              </tr>,
            ]
          : []),
      ])}
    </Table>
  );
}

export function EvaluationPanel({ runId, test }: { runId: string; test: Record<string, unknown> }) {
  const [filter, setFilter] = useState<Filter>('all');
  const answers = useQuery(queries.answers(runId, filter));
  const champion = test.champion as ChampionComparison | undefined;
  const counts = answers.data?.counts;
  const suites = (Array.isArray(test.suites) ? test.suites : []) as SuiteResult[];
  const shown = (f: Filter) =>
    f === 'newly-wrong' ? champion !== undefined : f === 'judge-disagreed' ? suites.some((s) => s.judged) : f === 'unsafe' ? suites.some((s) => s.unsafeBeforeFilter) : true;
  return (
    <div data-testid="evaluation">
      <IntervalFacts intervals={(test.intervals ?? {}) as Record<string, Interval | undefined>} />
      {champion && <ChampionSummary champion={champion} />}
      {Array.isArray(test.suites) && test.suites.length > 0 && <SuitesTable suites={test.suites as SuiteResult[]} />}
      <div className="tabs" role="tablist" aria-label="Which answers">
        {ANSWER_FILTERS.filter(shown).map((f) => (
          <button key={f} type="button" role="tab" aria-selected={filter === f} onClick={() => setFilter(f)} data-testid={`answers-${f}`}>
            {FILTER_LABELS[f]}
            {counts ? ` (${counts[f]})` : ''}
          </button>
        ))}
      </div>
      <Loaded query={answers} what="answers">
        {({ answers: list, counts: c }) =>
          list.length === 0 ? (
            <p className="muted">{c.all === 0 ? 'This run stored no answers (tested before answers were kept, or not tested yet).' : 'No answer matches.'}</p>
          ) : (
            <>
              <AnswerList answers={list} />
              {c[filter] > list.length && <p className="muted small">The first {ANSWERS_LIMIT} of {c[filter]}; all of them are in the test stage's answers artifact.</p>}
            </>
          )
        }
      </Loaded>
    </div>
  );
}
