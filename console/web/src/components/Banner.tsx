/** The screening-aid notice, shown on every page. */
export function ScreeningBanner() {
  return (
    <div
      role="note"
      data-testid="screening-banner"
      className="border-b border-amber-300 bg-amber-50 px-6 py-2.5 text-sm text-amber-900"
    >
      <div className="mx-auto flex max-w-screen-2xl items-start gap-3">
        <svg className="mt-0.5 h-4 w-4 flex-none" viewBox="0 0 20 20" fill="currentColor" aria-hidden="true">
          <path
            fillRule="evenodd"
            d="M8.485 2.495c.673-1.167 2.357-1.167 3.03 0l6.28 10.875c.673 1.167-.17 2.625-1.516 2.625H3.72c-1.347 0-2.189-1.458-1.515-2.625L8.485 2.495zM10 6a.75.75 0 01.75.75v3.5a.75.75 0 01-1.5 0v-3.5A.75.75 0 0110 6zm0 9a1 1 0 100-2 1 1 0 000 2z"
            clipRule="evenodd"
          />
        </svg>
        <p>
          <strong className="font-semibold">Screening aid, not a diagnosis.</strong> Verdicts are produced by an AI
          model (MedGemma) and can be wrong. Every result must be reviewed by a qualified pathologist before any
          clinical decision.
        </p>
      </div>
    </div>
  );
}
