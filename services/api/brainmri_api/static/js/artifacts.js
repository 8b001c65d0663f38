// Job artifacts (plots, images, downloads) fetched with the key and shown as blob URLs: the
// server never hands an artifact to a request without the key, so <img src> cannot point at it.

import { artifactUrl } from "./api.js";
import { fill, h } from "./dom.js";

/** An <img> that appears once its artifact has been fetched (with the key) as a blob. */
export function artifactImage(path, alt, imgClass, urls) {
  const img = h("img", { alt, className: imgClass });
  const frame = h("div", { className: "image-frame" }, img);
  artifactUrl(path)
    .then((url) => {
      img.src = urls.add(url);
    })
    .catch((err) => {
      fill(frame, h("p", { className: "error" }, `Could not load the image: ${err.message}`));
    });
  return frame;
}

/** A button that downloads one artifact under its own name. */
function downloadButton(path, name, urls) {
  return h(
    "button",
    {
      type: "button",
      onClick: async (event) => {
        const button = event.currentTarget;
        button.disabled = true;
        try {
          const link = h("a", { href: urls.add(await artifactUrl(path)), download: name });
          document.body.append(link);
          link.click();
          link.remove();
        } catch (err) {
          button.after(h("span", { className: "error", role: "alert" }, ` ${err.message}`));
        } finally {
          button.disabled = false;
        }
      },
    },
    `Download ${name}`,
  );
}

/** A job's artifacts as the report shows them: every PNG as a captioned figure (in the
 * order given), every other file as a download button. `captions` maps file names to text. */
export function artifactViews(entries, captions, urls) {
  const plots = entries
    .filter(([name]) => name.endsWith(".png"))
    .map(([name, path]) =>
      h(
        "figure",
        { className: "plot", dataset: { artifact: name } },
        artifactImage(path, captions[name] || name, "plot-image", urls),
        h("figcaption", {}, captions[name] || name),
      ),
    );
  const downloads = entries
    .filter(([name]) => !name.endsWith(".png"))
    .map(([name, path]) => downloadButton(path, name, urls));
  return { plots, downloads };
}
