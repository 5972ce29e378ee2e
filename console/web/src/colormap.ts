// The heatmap's colour map (slide_service/heatmap.py: matplotlib's RdYlBu_r, blue = no, red = yes),
// sampled at 11 stops so tile outlines in the viewer match the heatmap's colours.

const STOPS = [
  "#313695", "#4574b3", "#74add1", "#aad8e9", "#e0f3f8", "#fffebe",
  "#fee090", "#fdad60", "#f46d43", "#d62f27", "#a50026",
].map((hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)));

/** The CSS colour of p(yes) in [0, 1]. */
export function pYesColour(p: number): string {
  const t = Math.min(1, Math.max(0, p)) * (STOPS.length - 1);
  const i = Math.min(Math.floor(t), STOPS.length - 2);
  const f = t - i;
  const [r, g, b] = STOPS[i].map((c, k) => Math.round(c + (STOPS[i + 1][k] - c) * f));
  return `rgb(${r}, ${g}, ${b})`;
}

/** A CSS gradient of the whole scale, p(yes) 0 on the left. */
export const GRADIENT = `linear-gradient(to right, ${STOPS.map(([r, g, b]) => `rgb(${r}, ${g}, ${b})`).join(", ")})`;
