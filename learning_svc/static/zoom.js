// Zoom and pan of images (the viewer, compare): the wheel zooms about the pointer, `z` toggles
// between fitting the screen and actual pixels, dragging pans. One Zoom can drive several
// images, which then keep the same zoom and pan (compare).

const MIN_SCALE = 1; // 1: the image fits its box
const MAX_SCALE = 16;

export class Zoom {
  constructor(onChange) {
    this.onChange = onChange;
    this.reset();
  }

  reset() {
    this.scale = 1;
    this.x = 0; // pan, in pixels of the box, from the centre
    this.y = 0;
    this.onChange?.(this);
  }

  get zoomed() {
    return Math.abs(this.scale - 1) > 0.001; // below 1: a small image at its own pixels
  }

  transform() {
    return `translate(${this.x}px, ${this.y}px) scale(${this.scale})`;
  }

  // Zoom by `factor` keeping the point (px, py) of the box (from its centre) where it is.
  zoomAt(factor, px = 0, py = 0) {
    const scale = Math.min(MAX_SCALE, Math.max(MIN_SCALE, this.scale * factor));
    const applied = scale / this.scale;
    this.x = px - (px - this.x) * applied;
    this.y = py - (py - this.y) * applied;
    this.scale = scale;
    if (!this.zoomed) [this.x, this.y] = [0, 0];
    this.onChange?.(this);
  }

  // `z`: fit, or the image's actual pixels (smaller than the fit for a small image, which the
  // fit enlarges); twice the fit when that is its pixels already. It was always at least twice:
  // a 1600 px image fitted at 982 went to 123%, and a 64 px one fitted at 517 to 1035.
  toggle(image) {
    if (this.zoomed) {
      this.reset();
      return;
    }
    const fitted = image.getBoundingClientRect().width / this.scale;
    const actual = image.naturalWidth && fitted ? image.naturalWidth / fitted : 2;
    if (actual < 0.95) {
      [this.scale, this.x, this.y] = [actual, 0, 0];
      this.onChange?.(this);
    } else {
      this.zoomAt(actual > 1.05 ? actual : 2);
    }
  }

  panBy(dx, dy) {
    if (!this.zoomed) return;
    this.x += dx;
    this.y += dy;
    this.onChange?.(this);
  }

  // Wheel and drag on an element (the box the images sit in); its images kept fitted.
  attach(box) {
    const fit = () => box.querySelectorAll('img').forEach(fitImage);
    new ResizeObserver(fit).observe(box);
    box.addEventListener('load', fit, true); // an image's load does not bubble: caught on the way down
    box.addEventListener('wheel', (event) => {
      event.preventDefault();
      const rect = box.getBoundingClientRect();
      const px = event.clientX - rect.left - rect.width / 2;
      const py = event.clientY - rect.top - rect.height / 2;
      this.zoomAt(event.deltaY < 0 ? 1.25 : 0.8, px, py);
    }, { passive: false });
    let last = null;
    box.addEventListener('pointerdown', (event) => {
      if (!this.zoomed || event.button !== 0) return;
      last = [event.clientX, event.clientY];
      box.setPointerCapture(event.pointerId);
      box.classList.add('panning');
    });
    box.addEventListener('pointermove', (event) => {
      if (!last) return;
      this.panBy(event.clientX - last[0], event.clientY - last[1]);
      last = [event.clientX, event.clientY];
    });
    const end = () => {
      last = null;
      box.classList.remove('panning');
    };
    box.addEventListener('pointerup', end);
    box.addEventListener('pointercancel', end);
  }
}

// Fit: an image as large as its box allows, its shape kept. CSS's max-width and max-height only
// shrink: a 512 px image stayed 512 px on a 900 px stage, and a small one a stamp in the middle.
function fitImage(image) {
  const { naturalWidth: width, naturalHeight: height } = image;
  const { clientWidth: boxWidth, clientHeight: boxHeight } = image.parentElement;
  if (!width || !height || !boxWidth || !boxHeight) return; // not loaded, or not shown
  const scale = Math.min(boxWidth / width, boxHeight / height);
  image.style.width = `${width * scale}px`;
  image.style.height = `${height * scale}px`;
}
