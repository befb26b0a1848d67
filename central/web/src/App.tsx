import { lazy, Suspense, useState } from "react";
import { getToken, setToken } from "./api";
import { Link } from "./components/Link";
import { Loading } from "./components/States";
import { FleetPage } from "./pages/Fleet";
import { LoginPage } from "./pages/Login";
import { RawEventPage } from "./pages/RawEvent";
import { useRoute } from "./router";
import { browserZone } from "./time";

// The chart library is most of the bundle; the pages with charts load it when first opened, so
// the login and Fleet pages start without it.
const DevicePage = lazy(() => import("./pages/Device").then((m) => ({ default: m.DevicePage })));
const QualityPage = lazy(() => import("./pages/Quality").then((m) => ({ default: m.QualityPage })));

export function App() {
  const [token, setTokenState] = useState(getToken);
  const route = useRoute();
  if (!token) {
    return (
      <LoginPage
        onLogin={(t) => {
          setToken(t);
          setTokenState(t);
        }}
      />
    );
  }
  const logout = () => {
    setToken(null);
    setTokenState(null);
  };
  let page;
  let section = "fleet";
  if (route.path.startsWith("/device")) {
    page = <DevicePage params={route.params} />;
    section = "device";
  } else if (route.path.startsWith("/quality")) {
    page = <QualityPage params={route.params} />;
    section = "quality";
  } else if (route.path.startsWith("/raw")) {
    page = <RawEventPage params={route.params} />;
    section = "raw";
  } else {
    page = <FleetPage />;
  }
  return (
    <div className="app">
      <header>
        <span className="brand">meter-agent central</span>
        <nav>
          <Link to="/" className={section === "fleet" ? "active" : ""}>
            Fleet
          </Link>
          <Link to="/device" className={section === "device" ? "active" : ""}>
            Device
          </Link>
          <Link to="/quality" className={section === "quality" ? "active" : ""}>
            Quality
          </Link>
        </nav>
        <span className="zone" title="Times are stored in UTC and shown in your browser's zone">
          Times in {browserZone()}
        </span>
        <button type="button" onClick={logout}>
          Log out
        </button>
      </header>
      <main>
        <Suspense fallback={<Loading what="the page" />}>{page}</Suspense>
      </main>
    </div>
  );
}
